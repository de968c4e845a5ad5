"""Record ids, stage names and variants as file names: safe, unique within a folder, reversible.

An id is anybody's text: `..`, `a/b`, a NUL byte, 300 characters, `CON`, `Q1` next to `q1` on a
case-insensitive disk. `encode` percent-encodes every byte outside [A-Za-z0-9_.-] (and a leading or
trailing dot), so the name is one plain path component and `decode` gives the text back. A name longer
than MAX_NAME, or one that collides with an earlier name in the same folder when case is ignored,
gets `~` and a hash of the text instead of its tail; `NameMap.mapping()` records every name → text so
even those are reversible (exporters write it next to the files).
"""

from __future__ import annotations

import hashlib
import string
from urllib.parse import unquote_to_bytes

_SAFE = frozenset((string.ascii_letters + string.digits + "_.-").encode())
MAX_NAME = 120  # bytes; file systems allow 255, and a folder name is often joined with file names
_HASH = 16
# names Windows refuses for a file whatever the extension (the checkout may be shared with one)
_WINDOWS = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def encode(text: str) -> str:
    """`text` as one safe path component; decode(encode(text)) == text."""
    raw = text.encode("utf-8", "surrogatepass")  # ids may hold lone surrogates: keep them reversibly
    out = "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in raw)
    if out.startswith("."):  # hidden files, `.` and `..`
        out = "%2E" + out[1:]
    if out.endswith("."):  # Windows drops trailing dots
        out = out[:-1] + "%2E"
    if out.split(".")[0].upper() in _WINDOWS:
        out = f"%{ord(out[0]):02X}" + out[1:]
    return out or "%"  # the empty id: a lone % never comes out of encode otherwise


def decode(name: str) -> str:
    """The text a name from `encode` stands for (not one with a `~hash` tail: see NameMap.mapping)."""
    if name == "%":
        return ""
    return unquote_to_bytes(name).decode("utf-8", "surrogatepass")


def _shorten(name: str, text: str) -> str:
    cut = name[: MAX_NAME - _HASH - 1]
    if "%" in cut[-2:]:  # never split a %XX escape
        cut = cut[: cut.rindex("%")]
    return f"{cut}~{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:_HASH]}"


class NameMap:
    """File names for the texts placed in one folder: each text always gets the same name, no two names
    are equal ignoring case, and mapping() says which text each name stands for."""

    def __init__(self, reserved: tuple[str, ...] = ()) -> None:
        self._by_text: dict[str, str] = {}
        self._texts: dict[str, str] = {}  # casefolded name → text
        self._reserved = {r.casefold() for r in reserved}  # the folder's own files (e.g. the mapping)

    def name(self, text: str) -> str:
        if text in self._by_text:
            return self._by_text[text]
        name = encode(text)
        if len(name) > MAX_NAME or self._taken(name):
            name = _shorten(name, text)
        n = 1
        while self._taken(name):  # a hash collision: never seen, but never overwrite either
            n += 1
            name = _shorten(name, f"{text}\0{n}")
        self._by_text[text] = name
        self._texts[name.casefold()] = text
        return name

    def _taken(self, name: str) -> bool:
        return name.casefold() in self._texts or name.casefold() in self._reserved

    def mapping(self) -> dict[str, str]:
        """Every name given out → the text it stands for."""
        return {name: text for text, name in self._by_text.items()}
