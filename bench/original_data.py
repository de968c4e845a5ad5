"""The original PocketGuide project's accepted records through this project's checks: contracts, gates, lengths.

Reads the original project's public data (repository notemilianogarcia/pocket-guide, a strong hosted teacher,
every record passed the original pipeline's gates): `data/processed/dataset_v2.jsonl` (each row's `response`
is the accepted envelope, `prompt` the teacher's request) and, for lengths, its SFT files
`data/processed/sft/v2/{train,val}_sft.jsonl` (system + user messages, `target` the answer). Nothing of it
is stored in this repository: pass the files you downloaded.

1. Contracts: every response through `validate_envelope` with this checkout's `data/schemas` and with the
   contracts as they were at `--before` (read from git), per payload type.
2. Gates: `overconfidence_guard` and `verification_when_needed` (this checkout's code and keyword lists) on
   every response, with its own request as the prompt.
3. Lengths (with `--sft`): prompt + answer and answer tokens under the default student's tokenizer
   (SmolLM2-135M's chat template, EOS appended, as the trainer counts), what the old fixed sizes did with
   them (max_seq_length 640, max_new_tokens 448) and what the data-driven defaults pick.

    python bench/original_data.py DATASET_V2.jsonl [--sft TRAIN_SFT.jsonl VAL_SFT.jsonl] [--before REV]

LAST line: contract_accepted_before= contract_accepted_after= overconfidence_rejected= verification_rejected=
(and, with --sft, too_long_at_640= auto_max_seq_length= cut_at_448= auto_max_new_tokens=).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pocketguide.engine.runtime import GateInput
from pocketguide.pipelines.pocketguide.contracts import validate_envelope
from pocketguide.pipelines.pocketguide.gates import (
    KeywordOptions,
    OverconfidenceOptions,
    overconfidence_guard,
    verification_when_needed,
)

BEFORE = "45fa81e"  # main before issue 19's contracts


def old_schemas(rev: str, into: Path) -> Path:
    """data/schemas as they were at `rev`, written into a folder."""
    names = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", f"{rev}:data/schemas"],
                           capture_output=True, text=True, check=True).stdout.split()
    for name in names:
        blob = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:data/schemas/{name}"],
                              capture_output=True, check=True).stdout
        (into / name).write_bytes(blob)
    return into


def contracts(rows: list[dict[str, Any]], schemas: dict[str, Path]) -> dict[str, Counter]:
    """{label: Counter of 'type ok' / 'type code'} per schema folder."""
    out = {}
    for label, folder in schemas.items():
        c: Counter = Counter()
        for r in rows:
            ok, code, _ = validate_envelope(r["response"], folder)
            c[(r["payload_type"], "accepted" if ok else code)] += 1
        out[label] = c
    return out


def gates(rows: list[dict[str, Any]]) -> dict[str, list[tuple[str, Any]]]:
    """Each gate's rejections: (record id, details)."""
    out: dict[str, list[tuple[str, Any]]] = {"overconfidence_guard": [], "verification_when_needed": []}
    for r in rows:
        item = GateInput(r["response"], None, {"data": {"prompt": r.get("prompt") or ""}}, {}, ROOT)
        for name, fn, opts in (("overconfidence_guard", overconfidence_guard, OverconfidenceOptions()),
                               ("verification_when_needed", verification_when_needed, KeywordOptions())):
            res = fn(item, opts)
            if not res.passed:
                out[name].append((r["id"], res.details))
    return out


def lengths(sft_files: list[str]) -> dict[str, Any]:
    from pocketguide.training.data import tokenize
    from pocketguide.training.lengths import distribution, eval_max_new_tokens, pick_max_seq_length
    from pocketguide.training.model import offline, prepare_base

    offline()
    import os

    from transformers import AutoTokenizer

    cache = Path(os.environ.get("POCKETGUIDE_MODEL_CACHE") or Path.home() / ".cache/pocketguide/models")
    tok = AutoTokenizer.from_pretrained(str(prepare_base(None, cache).path))  # the default student's
    totals, targets = [], []
    for path in sft_files:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            target = rec["target"] if isinstance(rec["target"], str) else json.dumps(rec["target"], ensure_ascii=False)
            msgs = [m for m in rec["messages"] if m["role"] != "assistant"] + [{"role": "assistant", "content": target}]
            ex = tokenize(tok, rec["id"], {"messages": msgs})
            totals.append(len(ex.input_ids))
            targets.append(ex.n_target)
    auto_len, how = pick_max_seq_length(totals, 0.95, None)
    auto_new, why = eval_max_new_tokens(targets, None)
    return {"n": len(totals), "total": distribution(totals), "target": distribution(targets),
            "too_long_at_640": sum(1 for t in totals if t > 640), "cut_at_448": sum(1 for t in targets if t > 448),
            "auto_max_seq_length": auto_len, "auto_how": how,
            "kept_at_auto": sum(1 for t in totals if t <= auto_len),
            "auto_max_new_tokens": auto_new, "auto_new_why": why,
            "cut_at_auto": sum(1 for t in targets if t > auto_new)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", help="the original project's data/processed/dataset_v2.jsonl")
    ap.add_argument("--sft", nargs="*", default=[], help="its data/processed/sft/v2/{train,val}_sft.jsonl")
    ap.add_argument("--before", default=BEFORE, help="git revision whose data/schemas are 'before'")
    args = ap.parse_args()
    rows = [json.loads(line) for line in Path(args.dataset).read_text(encoding="utf-8").splitlines() if line.strip()]
    # the accepted ones: a quality verdict with every original gate passed (dataset_v2 also holds 40
    # synthetic_v2 rows with no verdict, which break the original's own schema: no payload title)
    rows = [r for r in rows if (r.get("quality") or {}).get("overall_ok") is True and isinstance(r.get("response"), dict)]
    types = sorted({r["payload_type"] for r in rows})
    with tempfile.TemporaryDirectory() as tmp:
        counts = contracts(rows, {"before": old_schemas(args.before, Path(tmp)), "after": ROOT / "data/schemas"})
    accepted = {}
    print(f"{len(rows)} accepted records of the original project ({args.dataset})")
    for label, c in counts.items():
        accepted[label] = sum(n for (_, what), n in c.items() if what == "accepted")
        per = ", ".join(f"{t} {c[(t, 'accepted')]}/{sum(n for (tt, _), n in c.items() if tt == t)}" for t in types)
        fails = Counter()
        for (_, what), n in c.items():
            if what != "accepted":
                fails[what] += n
        print(f"contract {label}: {accepted[label]}/{len(rows)} accepted ({accepted[label] / len(rows):.0%}) — {per}"
              + (f"; rejected: {dict(fails)}" if fails else ""))
    rejected = gates(rows)
    for name, rej in rejected.items():
        print(f"{name}: rejects {len(rej)} of {len(rows)}")
        for rid, details in rej[:10]:
            print(f"  {rid}: {json.dumps(details, ensure_ascii=False)[:300]}")
    last = (f"contract_accepted_before={accepted['before']}/{len(rows)} contract_accepted_after={accepted['after']}/"
            f"{len(rows)} overconfidence_rejected={len(rejected['overconfidence_guard'])} "
            f"verification_rejected={len(rejected['verification_when_needed'])}")
    if args.sft:
        ln = lengths(args.sft)
        t, a = ln["total"], ln["target"]
        print(f"{ln['n']} SFT records: prompt + answer tokens p50 {t['p50']}, p95 {t['p95']}, max {t['max']}; answer "
              f"{a['min']}–{a['max']} (p50 {a['p50']})")
        print(f"old max_seq_length 640: {ln['too_long_at_640']} of {ln['n']} too_long; auto: {ln['auto_max_seq_length']} "
              f"({ln['auto_how']}; keeps {ln['kept_at_auto']})")
        print(f"old max_new_tokens 448 cuts {ln['cut_at_448']} of {ln['n']} answers; auto: {ln['auto_max_new_tokens']} "
              f"({ln['auto_new_why']}; cuts {ln['cut_at_auto']})")
        last += (f" too_long_at_640={ln['too_long_at_640']}/{ln['n']} auto_max_seq_length={ln['auto_max_seq_length']} "
                 f"cut_at_448={ln['cut_at_448']}/{ln['n']} auto_max_new_tokens={ln['auto_max_new_tokens']}")
    print(last)


if __name__ == "__main__":
    main()
