"""What decided each record, in named parts, and the two fingerprints every record carries.

A stage's recipe is a table of parts, each with a label a person can read ("template draft.j2",
"teacher sampling", "gate overconfidence_guard options") and a short hash of its value. A record
stores two fingerprints built from the parts that applied to it:

  gen_fp    what decided its generated text: vars, route, the template source with its includes, the
            template choice and mode, and its generator's parts (for `llm`: who answers, sampling,
            output shape, the decoding schema this record was sent).
  judge_fp  what judged that text: the parser (name, options, code), the validation schema, the gates
            (names, options, code), allow_truncated, the run settings gates read (gating_mode) and the
            files the parser and gates read through `resolve()`.
  parse_fp  the part of judge_fp that decided its parsed value and schema verdict (all of it but the gates),
            on records that got as far as the gates: a re-judge whose parse_fp is unchanged (only a gate
            changed) keeps the stored parsed value and runs the gates alone (engine/steps.py).

Together with `input_fp` (the input records' content) they say whether a stored record is current.
The parts are computed once per stage; a record's fingerprints are a dict lookup each.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import orjson

from pocketguide.engine import registry
from pocketguide.engine.generators import GeneratorRecipe
from pocketguide.engine.redact import redact
from pocketguide.engine.templates import template_tree

GEN, JUDGE, STATS = "gen", "judge", "stats"
SHOWN_MAX = 400  # a part's value longer than this (as JSON) is shown by its hash only
FILES_READ = "files read by the parser and gates"
RUN_ONLY_SETTINGS = frozenset({"limit_total"})  # how run-all counts --limit; decides no record's verdict


def digest(value: Any) -> str:
    blob = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


@lru_cache(maxsize=512)
def _file_sha(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def path_sha(path: Path) -> str | None:
    """A file's content hash; a folder's covers its files' names and contents; None when absent."""
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_dir():
        return _file_sha(str(path), st.st_mtime_ns, st.st_size)
    entries = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(f for f in filenames if not f.startswith(".")):
            full = Path(dirpath) / name
            entries.append((str(full.relative_to(path)), path_sha(full)))
    return digest(entries)


def code_version(fn: Any) -> dict[str, Any]:
    """Which code a registered function is: its module and that module file's content hash."""
    try:
        source = inspect.getsourcefile(fn)
    except TypeError:
        source = None
    return {"module": getattr(fn, "__module__", None), "sha": path_sha(Path(source)) if source else None}


@dataclass
class Part:
    side: str  # gen: regenerate when it changes; judge: re-judge from the stored raw output; stats: recount
    value: Any
    fp: str


@dataclass
class Recipe:
    """The parts of one stage and, for per-record stages, which parts apply to which record."""

    parts: dict[str, Part] = field(default_factory=dict)
    routed: list[str] = field(default_factory=list)  # gen labels of every record that reached the route
    choices: dict[str, list[str]] = field(default_factory=dict)  # template choice id → its gen labels
    modes: dict[str, list[str]] = field(default_factory=dict)  # generator mode → its gen labels
    per_record: dict[str, Callable[[dict[str, Any]], str | None]] = field(default_factory=dict)
    lazy: dict[str, Callable[[str], Any]] = field(default_factory=dict)  # label prefix → value of such a part
    judges: dict[str, list[str]] = field(default_factory=dict)  # template choice id → its judge labels
    parses: dict[str, list[str]] = field(default_factory=dict)  # template choice id → its judge labels less gates
    files_read: dict[str, str | None] = field(default_factory=dict)  # what the judges read, as of the last run
    _gen: dict[tuple, str] = field(default_factory=dict)
    _judge: dict[str, str] = field(default_factory=dict)
    _parse: dict[str, str] = field(default_factory=dict)

    def add(self, side: str, label: str, value: Any) -> str:
        # hashed as shown: a secret-looking value (a key in extra_body) neither decides a record nor leaks
        self.parts[label] = Part(side, value, digest([label, redact(value)]))
        return label

    # per record --------------------------------------------------------------------------------
    def gen_labels(self, record: dict[str, Any]) -> list[str]:
        mode = record.get("mode")
        if mode is None:  # rejected before routing (missing or malformed input) or skipped by the route
            return list(self.routed) if "route" in record else []
        cid = record.get("template") or "default"
        labels = list(self.choices.get(cid, [f"template choice {cid} (no longer in the spec)"]))
        labels += self.modes.get(mode, [f"mode {mode} (no longer used)"])
        own = self.per_record.get(mode)
        extra = own(record) if own else None
        return labels + [extra] if extra else labels

    def gen_of(self, record: dict[str, Any]) -> str:
        mode = record.get("mode")
        if mode is None:
            key: tuple = ("route" in record,)
        else:
            own = self.per_record.get(mode)
            key = (mode, record.get("template"), own(record) if own else None)
        fp = self._gen.get(key)
        if fp is None:
            fp = self._gen[key] = self.combine(self.gen_labels(record))
        return fp

    def judge_labels(self, record: dict[str, Any]) -> list[str]:
        cid = record.get("template") or "default"
        return list(self.judges.get(cid, [f"template choice {cid} (no longer in the spec)"]))

    def judge_of(self, record: dict[str, Any]) -> str:
        cid = record.get("template") or "default"
        fp = self._judge.get(cid)
        if fp is None:
            fp = self._judge[cid] = self.combine(self.judge_labels(record))
        return fp

    def parse_of(self, record: dict[str, Any]) -> str:
        cid = record.get("template") or "default"
        fp = self._parse.get(cid)
        if fp is None:
            labels = self.parses.get(cid, [f"template choice {cid} (no longer in the spec)"])
            fp = self._parse[cid] = self.combine(["parse", *labels])
        return fp

    def combine(self, labels: list[str]) -> str:
        if not labels:
            return ""
        return digest(sorted((label, p.fp if (p := self.parts.get(label)) else "missing") for label in labels))

    # what the manifest keeps, and what changed since --------------------------------------------
    def to_manifest(self) -> dict[str, Any]:
        parts = {}
        for label, p in self.parts.items():
            shown = redact(p.value)
            if len(orjson.dumps(shown, default=str)) > SHOWN_MAX:
                shown = {"hash": p.fp}
            parts[label] = {"side": p.side, "fp": p.fp, "value": shown}
        return {"summary": digest(sorted((k, p.fp) for k, p in self.parts.items())), "parts": parts,
                "files_read": self.files_read}

    def changes(self, manifest: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        """Parts whose hash differs from the manifest's: label → {side, old, new, kind}."""
        old = ((manifest or {}).get("recipe") or {}).get("parts")
        if old is None:
            return {}
        for label in old:  # parts records pick (a decoding schema per payload type) are known once asked for
            value_of = next((v for prefix, v in self.lazy.items() if prefix and label.startswith(prefix)), None)
            if label not in self.parts and value_of is not None:
                self.add(GEN, label, value_of(label))
        out: dict[str, dict[str, Any]] = {}
        for label, p in self.parts.items():
            was = old.get(label)
            if was is None:
                out[label] = {"side": p.side, "kind": "added", "old": None, "new": _shown(p)}
            elif was.get("fp") != p.fp:
                out[label] = {"side": p.side, "kind": "changed", "old": was.get("value"), "new": _shown(p)}
        for label, was in old.items():
            if label not in self.parts:
                out[label] = {"side": was.get("side"), "kind": "removed", "old": was.get("value"), "new": None}
        return out


def _shown(p: Part) -> Any:
    shown = redact(p.value)
    return {"hash": p.fp} if len(orjson.dumps(shown, default=str)) > SHOWN_MAX else shown


# building a per-record stage's recipe -----------------------------------------------------------

def _dump(obj: Any) -> Any:
    return obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj


def _files_part(rt: Any, previous: dict[str, Any] | None) -> tuple[dict[str, str | None], str]:
    """The files the judges read last time, and an epoch that changes only when one of them does: a
    stage's first run does not know them yet, so its records must not be re-judged when it learns them."""
    recipe = (previous or {}).get("recipe") or {}
    known: dict[str, str | None] = recipe.get("files_read") or {}
    old_epoch = ((recipe.get("parts") or {}).get(FILES_READ) or {}).get("value") or ""
    now = {rel: path_sha(rt.pipe.resolve(rel)) for rel in known}
    return now, (old_epoch if now == known else digest(sorted(now.items())))


def _judge_parts(r: Recipe, rt: Any, cid: str, choice: Any, common: list[str]) -> list[str]:
    """A variant template that names its own parser (or options) gets its own labels; the others share the
    stage's, so a change to the stage's parser options names the records it applies to."""
    own = next((t for t in (rt.stage.variants.templates if rt.stage.variants else []) if t.id == cid), None)
    parser = f"variant {cid} parser" if own is not None and own.parser else "parser"
    options = f"variant {cid} parser options" if own is not None and own.parser_options is not None else \
        "parser options"
    return [r.add(JUDGE, parser, choice.parser_name), r.add(JUDGE, f"{parser} code", code_version(choice.parser)),
            r.add(JUDGE, options, _dump(choice.parser_options))] + common


def build_recipe(rt: Any, previous: dict[str, Any] | None = None) -> Recipe:
    """The recipe of a per-record stage from its runtime; `previous` is the stage's last manifest (it
    lists the files the parser and gates read)."""
    r = Recipe()
    stage, pipe = rt.stage, rt.pipe
    r.routed = [r.add(GEN, "vars", stage.vars)]
    if stage.route:
        r.routed.append(r.add(GEN, "route", stage.route.model_dump(mode="json")))
    gates = [r.add(JUDGE, "gates", [g[0] for g in rt.gates])]
    for i, (name, fn, opts) in enumerate(rt.gates):
        key = name if [g[0] for g in rt.gates].count(name) == 1 else f"{name}#{i + 1}"
        gates += [r.add(JUDGE, f"gate {key} options", _dump(opts)), r.add(JUDGE, f"gate {name} code",
                                                                         code_version(fn))]
    common: list[str] = []  # what parses and validates, as well as what gates (files read: parser or gates)
    if stage.schema_:
        common.append(r.add(JUDGE, f"schema {stage.schema_}", path_sha(pipe.resolve(stage.schema_))))
    common.append(r.add(JUDGE, "allow_truncated", stage.allow_truncated))
    common.append(r.add(JUDGE, "run settings", {k: v for k, v in sorted(rt.settings.items())
                                                 if k not in RUN_ONLY_SETTINGS}))
    r.files_read, epoch = _files_part(rt, previous)
    common.append(r.add(JUDGE, FILES_READ, epoch))
    choices = {"default": rt.default_choice, **rt.choices, **rt.route_choices}
    for cid, choice in choices.items():
        labels = list(r.routed)
        if choice is not None and choice.renderer is not None:
            ren = choice.renderer
            for name in template_tree(pipe.templates_dir, ren.name, ren.source):
                inline = ren.path is None and name == ren.name  # inline text (a catalog cell): its own hash
                labels.append(r.add(GEN, f"template {name}", ren.sha256[:16] if inline
                                    else path_sha(pipe.templates_dir / name)))
        what = {"mode": choice.mode, "template": choice.renderer.name if choice.renderer else None} if choice else None
        labels.append(r.add(GEN, "mode" if cid == "default" else f"template choice {cid}", what))
        r.choices[cid] = labels
        if choice is not None:
            r.parses[cid] = _judge_parts(r, rt, cid, choice, common)
            r.judges[cid] = r.parses[cid] + gates
    for mode in sorted(rt.modes):
        cls = registry.GENERATORS[mode]
        made = cls.recipe(rt) if hasattr(cls, "recipe") else GeneratorRecipe()
        r.modes[mode] = [r.add(GEN, label, value) for label, value in made.parts.items()]
        if made.per_record is not None:
            r.per_record[mode] = _own_part(r, made.per_record, made.value_of)
            r.lazy[made.prefix] = made.value_of
    r.add(STATS, "facets", stage.facets)
    return r


def _own_part(r: Recipe, label_of: Callable[[dict[str, Any]], str | None],
              value_of: Callable[[str], Any]) -> Callable[[dict[str, Any]], str | None]:
    """A part the record picks (e.g. its decoding schema by payload type): registered on first sight."""

    def own(record: dict[str, Any]) -> str | None:
        label = label_of(record)
        if label is not None and label not in r.parts:
            r.add(GEN, label, value_of(label))
        return label

    return own
