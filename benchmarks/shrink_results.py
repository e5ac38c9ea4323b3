"""Keeps the files in `benchmarks/results/` small: learning curves down-sampled, nothing else
touched.

    python benchmarks/shrink_results.py             # shrink every file over --max-kb in place
    python benchmarks/shrink_results.py --check     # exit 1 if one is over (for CI)

A curve (`curve_steps` and `curve_return`, one list per seed, as `progression.py` writes them)
keeps `MAX_POINTS` points per seed, evenly spaced by update, the first and the last kept, and
the row gains a `curve_note` saying what was dropped. The summary figures (final greedy return,
steps to threshold, speed) are computed from the full curves before they are written and are
never recomputed from the shrunk ones; the plots read the shrunk ones (200-point grids).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Any

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
MAX_POINTS = 250  # per seed and curve
MAX_KB = 1024  # a results file above this is shrunk (or, with --check, reported)


def evenly_spaced(n: int, points: int = MAX_POINTS) -> list[int]:
    """`points` indices of `range(n)`, evenly spaced, first and last included (all if fewer)."""
    if n <= points:
        return list(range(n))
    return sorted({round(i * (n - 1) / (points - 1)) for i in range(points)})


def shrink_row(row: dict[str, Any], points: int = MAX_POINTS) -> dict[str, Any]:
    """`row` with its per-seed curves down-sampled to `points` points each (a note added)."""
    steps, returns = row.get("curve_steps"), row.get("curve_return")
    if not steps or len(steps[0]) <= points:
        return row
    n = len(steps[0])
    keep = evenly_spaced(n, points)
    row = dict(row)
    row["curve_steps"] = [[s[i] for i in keep] for s in steps]
    row["curve_return"] = [[r[i] for i in keep] for r in returns]
    row["curve_note"] = (
        f"down-sampled: {len(keep)} of {n} points per seed kept, evenly spaced by update "
        "(first and last kept); the other points were dropped"
    )
    return row


def shrink(data: Any) -> Any:
    """A results file's content with every row's curves down-sampled."""
    if isinstance(data, list):
        return [shrink_row(r) if isinstance(r, dict) else r for r in data]
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        return {**data, "rows": shrink(data["rows"])}
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report files over --max-kb")
    parser.add_argument("--max-kb", type=int, default=MAX_KB)
    args = parser.parse_args()
    over = []
    for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
        size_kb = os.path.getsize(path) / 1024
        if size_kb <= args.max_kb:
            continue
        over.append(path)
        if args.check:
            print(f"{path}: {size_kb:,.0f} KB (over {args.max_kb:,} KB)")
            continue
        with open(path) as f:
            data = json.load(f)
        with open(path, "w") as f:
            json.dump(shrink(data), f)
        print(f"{path}: {size_kb:,.0f} KB -> {os.path.getsize(path) / 1024:,.0f} KB")
    return 1 if args.check and over else 0


if __name__ == "__main__":
    sys.exit(main())
