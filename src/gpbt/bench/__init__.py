"""The benchmark harness: suites of tasks x methods x seeds, run fairly, summarised honestly.

- `gpbt.bench.suite`: suite files (`benchmarks/suites/NAME.toml`) -> validated cells.
- `gpbt.bench.runner`: runs the cells (resumable, supervised), one experiment folder per cell,
  and collects them into one bench-level store (`bench.sqlite`, readable with `load_bench`).
- `gpbt.bench.stats`: normalised scores, IQM with stratified-bootstrap intervals, probability of
  improvement, average rank, performance profiles, diversity and overhead summaries.
- `gpbt.bench.report`: the HTML / PNG / Markdown report of a bench folder.
"""

from gpbt.bench.store import BENCH_DB, Bench, is_bench_folder, load_bench

__all__ = ["BENCH_DB", "Bench", "is_bench_folder", "load_bench"]
