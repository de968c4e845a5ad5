"""Where one record's time went, phase by phase, and the per-stage sums in stats.json.

Every record a per-record stage writes carries `timings`:

    render_ms   context, route and prompt rendering (prepare)
    llm_ms      the generator's call: a teacher request with its waits and retries, or a copy
    parse_ms    parser and schema validation
    gate_ms     every gate
    finished_at when the record was handed to the store (created_at is when it was started)

A missing phase did not run (a record rejected while rendering has no llm_ms). `write_ms`, the time the
store took to write the record's line, cannot be inside that line: it is summed per stage only.
stats.json's `timings` has, per phase, the records timed, the total, the mean and the largest.
"""

from __future__ import annotations

import time
from typing import Any

PHASES = ("render_ms", "llm_ms", "parse_ms", "gate_ms", "write_ms")


def since_ms(t0: float) -> float:
    """Milliseconds since perf_counter() read t0, to the microsecond (int() and a division: round() costs
    more than the rest of the timing put together)."""
    return int((time.perf_counter() - t0) * 1e6) / 1000


class PhaseTotals:
    """Per-phase count, total and largest value, in constant memory (no per-record list)."""

    def __init__(self) -> None:
        self.count = dict.fromkeys(PHASES, 0)
        self.total = dict.fromkeys(PHASES, 0.0)
        self.largest = dict.fromkeys(PHASES, 0.0)

    def add_one(self, phase: str, ms: float) -> None:
        self.count[phase] += 1
        self.total[phase] += ms
        if ms > self.largest[phase]:
            self.largest[phase] = ms

    def add_many(self, phase: str, count: int, total_ms: float) -> None:
        """`count` records timed together (a fused copy loop, engine/fused.py): their total, and their mean
        as the largest value seen (one record's own time is not measured)."""
        if count:
            self.count[phase] += count
            self.total[phase] += total_ms
            self.largest[phase] = max(self.largest[phase], total_ms / count)

    def add(self, timings: dict[str, Any]) -> None:
        count, total, largest = self.count, self.total, self.largest
        for phase, value in timings.items():  # a record's few entries, not every phase (hot path)
            if phase in count and (type(value) is float or type(value) is int):
                count[phase] += 1
                total[phase] += value
                if value > largest[phase]:
                    largest[phase] = value

    def to_dict(self) -> dict[str, Any]:
        return {phase: {"records": n, "total_ms": round(self.total[phase], 3),
                        "mean_ms": round(self.total[phase] / n, 3), "max_ms": round(self.largest[phase], 3)}
                for phase, n in self.count.items() if n}
