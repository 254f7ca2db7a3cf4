"""The benchmark harness: suites of tasks x methods x seeds, run fairly, summarised honestly.

- `gpbt.bench.suite`: suite files (`gpbt/bench/suites/NAME.toml`, shipped as package data) -> validated cells.
- `gpbt.bench.runner`: runs the cells (resumable, supervised), one experiment folder per cell,
  and collects them into one bench-level store (`bench.sqlite`, readable with `load_bench`).
- `gpbt.bench.stats`: normalised scores, IQM with stratified-bootstrap intervals, probability of
  improvement, average rank, performance profiles, diversity and overhead summaries.
- `gpbt.bench.record`: one finished cell as a small JSON-able record; the tables are built
  from records, wherever they come from.
- `gpbt.bench.results`: the results folder (`--results`): records as committed JSON files,
  done cells recognised from them, the report rebuilt from them alone (`load_results`).
- `gpbt.bench.provenance`: the code hash, commit and machine a cell ran on.
- `gpbt.bench.estimate`: `--estimate`, a suite's cost from a few generations per task.
- `gpbt.bench.report`: the HTML / PNG / Markdown report of a bench or results folder.
"""

from gpbt.bench.store import BENCH_DB, Bench, is_bench_folder, load_bench

__all__ = ["BENCH_DB", "Bench", "is_bench_folder", "load_bench"]
