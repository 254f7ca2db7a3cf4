"""How fast the experiment store takes a batch of reports (the vector engine writes a
population's reports once per generation; the local engine one at a time).

    python benchmarks/bench_store.py [--reports 10000] [--rounds 5]

Prints the median and best seconds to insert the batch in one transaction, and for one report
per transaction; the figure a test used to assert (10,000 reports in under 1 s) belongs here,
not in a test that a loaded machine fails for no fault.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from gpbt.store import ExperimentStore


def rows(n: int) -> list[dict]:
    return [
        {
            "member": i % 16,
            "time": i // 16,
            "score": float(i),
            "metrics": {"ret": np.float32(i), "loss": {"pi": 0.1, "v": 0.2}},
            "config": {"lr": 1e-3, "clip": 0.2},
        }
        for i in range(n)
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    batch, single = [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as d, ExperimentStore(d) as store:
            data = rows(args.reports)
            t0 = time.perf_counter()
            store.add_reports(data)
            batch.append(time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as d, ExperimentStore(d) as store:
            data = rows(min(args.reports, 1000))
            t0 = time.perf_counter()
            for r in data:
                store.add_reports([r])
            single.append((time.perf_counter() - t0) / len(data))
    print(
        f"{args.reports} reports in one batch: median {statistics.median(batch):.3f} s, "
        f"best {min(batch):.3f} s"
    )
    print(f"one report per transaction: median {1e3 * statistics.median(single):.2f} ms each")


if __name__ == "__main__":
    main()
