"""Can this text still become one JSON object? An incremental check, fed one decoded token at a time.

The evaluation scores an answer as parsed only when the whole answer is one JSON object (`json.loads` of
the stripped text). Once the text so far is not the start of any such object — prose before the `{`, a
syntax error, text after the object closed — no continuation can parse, so decoding that row further
cannot change any figure but "finished". The evaluation stops such a row (and reports how many it
stopped). The check errs on the side of "still viable": it only says no where `json.loads` must fail.
"""

from __future__ import annotations

_WS = " \t\n\r"
_LITERALS = ("true", "false", "null", "NaN", "Infinity", "-Infinity")  # what Python's json.loads accepts
_NUMBER_CHARS = frozenset("0123456789+-.eE")
_ESCAPES = frozenset('"\\/bfnrtu')
_HEX = frozenset("0123456789abcdefABCDEF")


class JsonObjectPrefix:
    """feed(text) → False once the text fed so far can no longer begin one JSON object (then it stays False)."""

    def __init__(self) -> None:
        self.ok = True
        self.stack: list[str] = []  # "{" or "["
        self.expect = "start"  # start | key_or_end | key | colon | value | value_or_end | comma_or_end | done
        self.in_string = False
        self.escape = 0  # 1 after a backslash; 2..5 inside \\uXXXX
        self.token = ""  # a number or literal being read

    def feed(self, text: str) -> bool:
        for ch in text:
            if not self.ok:
                return False
            self.ok = self._char(ch)
        return self.ok

    def _char(self, ch: str) -> bool:
        if self.in_string:
            return self._string_char(ch)
        if self.token:
            if ch in _NUMBER_CHARS or ch.isalpha():
                self.token += ch
                return self._token_viable()
            if not self._token_complete():
                return False
            self.token = ""
            self._after_value()
        if ch in _WS:
            return True
        e = self.expect
        if e == "done":
            return False
        if e == "start":
            if ch != "{":
                return False
            self.stack.append("{")
            self.expect = "key_or_end"
            return True
        if e in ("key_or_end", "key"):
            if ch == "}" and e == "key_or_end":
                return self._close("{")
            if ch == '"':
                self.in_string, self.expect = True, "colon"
                return True
            return False
        if e == "colon":
            if ch == ":":
                self.expect = "value"
                return True
            return False
        if e == "comma_or_end":
            if ch == ",":
                self.expect = "key" if self.stack[-1] == "{" else "value"
                return True
            return self._close("}" if ch == "}" else "]" if ch == "]" else "")
        if e in ("value", "value_or_end"):
            if ch == "]" and e == "value_or_end":
                return self._close("[")
            if ch == '"':
                self.in_string, self.expect = True, "after_string_value"
                return True
            if ch in "{[":
                self.stack.append(ch)
                self.expect = "key_or_end" if ch == "{" else "value_or_end"
                return True
            if ch in _NUMBER_CHARS or ch in "tfnNI":
                self.token = ch
                return self._token_viable()
            return False
        return False

    def _string_char(self, ch: str) -> bool:
        if self.escape == 1:
            if ch not in _ESCAPES:
                return False
            self.escape = 2 if ch == "u" else 0
            return True
        if self.escape >= 2:
            if ch not in _HEX:
                return False
            self.escape = 0 if self.escape == 5 else self.escape + 1
            return True
        if ch == "\\":
            self.escape = 1
            return True
        if ch == '"':
            self.in_string = False
            if self.expect == "after_string_value":
                self._after_value()
            return True  # a key: expect stays "colon"
        return ord(ch) >= 0x20  # json.loads (strict) refuses raw control characters inside strings

    def _close(self, opener: str) -> bool:
        if not opener or not self.stack:
            return False
        if opener in "}]":  # called with the closing character from comma_or_end
            opener = "{" if opener == "}" else "["
        if self.stack[-1] != opener:
            return False
        self.stack.pop()
        self._after_value()
        return True

    def _after_value(self) -> None:
        self.expect = "comma_or_end" if self.stack else "done"

    def _token_viable(self) -> bool:
        t = self.token
        if t[0] in "tfnNI" or t.startswith("-I"):
            return any(lit.startswith(t) for lit in _LITERALS)
        return all(c in _NUMBER_CHARS for c in t)  # digits and signs: judged when the number ends

    def _token_complete(self) -> bool:
        import json

        t = self.token
        if t in _LITERALS:
            return True
        try:
            json.loads(t)
        except ValueError:
            return False
        return True
