"""`gpbt bench SUITE`: run every (task, method, seed) cell of a suite, resumably, then collect.

Layout of a bench folder:

    <bench>/bench.sqlite                       the suite, cell statuses, collected tables
    <bench>/<task>/<method>/seed<k>/           one experiment folder per cell (gpbt.store)

With `results=DIR` (`gpbt bench SUITE --results DIR`) every finished cell is also written to DIR
as a small JSON record (gpbt.bench.results), and a cell with a record there counts as done: the
results, committed, carry a bench across machines.

A cell is done when its store has the state "summary"; done cells are skipped, so running the
same command again continues an interrupted bench, and `--seeds 10` after `--seeds 5` only runs
the new seeds. A cell that was started and interrupted resumes from its last checkpoint (the
vector engine re-runs from there deterministically, so the result is what an uninterrupted run
gives).

Cells run one after another in ONE worker process (spawned, so the parent never imports JAX):
compiled agents are shared between cells, which saves seconds per cell. The parent watches it
with the same supervisor as `gpbt run` (gpbt.engines.supervisor): a worker that reports no
progress for `watchdog_seconds` (a rare XLA hang on small CPU machines) or dies is restarted,
and the cell it was on resumes from its checkpoint; a cell that fails repeatedly is marked
failed and the bench goes on with the others.
"""

from __future__ import annotations

import math
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from gpbt.bench.cell import cell_done, run_cell
from gpbt.bench.provenance import git_commit, machine
from gpbt.bench.record import cell_record
from gpbt.bench.results import ResultsFolder, check_same_config, frames_from_records
from gpbt.bench.store import BenchStore
from gpbt.bench.suite import Cell, Suite, load_suite
from gpbt.engines.supervisor import Watchdog, watch_child
from gpbt.store import ExperimentStore, load

MAX_CELL_ATTEMPTS = 3


def _available(cell: Cell) -> str | None:
    """Why a cell cannot run on this install (None: it can): the environments registry
    knows which of its environments need an optional dependency."""
    if cell.kind != "vector":
        return None
    from gpbt.rl.envs import missing_dependency

    return missing_dependency(str(cell.config.get("env", "")))


def run_suite(
    suite: str | Path | Suite,
    out: str | Path | None = None,
    seeds: int | None = None,
    *,
    supervise: bool = True,
    progress: bool = True,
    only: Callable[[Cell], bool] | None = None,
    on_event: Callable[[dict], None] | None = None,
    watchdog_seconds: float | None = None,
    results: str | Path | None = None,
    tasks: list[str] | None = None,
    methods: list[str] | None = None,
) -> Path:
    """Run the suite's pending cells into `out`, collect the tables; returns the bench folder.

    `tasks`, `methods`: shell-style patterns on task and method (row) names; only the cells of
    the matching tasks and methods run, the rest stay pending (a later run without them, here
    or on another machine, runs those and skips these).
    `supervise=False` runs the cells in this process (tests); `only` restricts to some cells;
    `on_event` sees every progress event (tests use it to interrupt a run on purpose).
    `results`: a results folder (gpbt.bench.results): cells with a record there are done, and
    every cell that finishes is written there at once.
    """
    if not isinstance(suite, Suite):
        suite = load_suite(suite, seeds=seeds)
    out = Path(out) if out else Path("runs") / f"bench-{suite.label.replace(':', '-')}"
    say = _printer(progress)
    chosen_tasks, chosen_methods = suite.select(tasks, methods)
    if tasks or methods:
        outer = only

        def only(c: Cell) -> bool:
            chosen = c.task in chosen_tasks and c.method in chosen_methods
            return chosen and (outer is None or outer(c))

    cells = suite.cells()
    res = ResultsFolder(results, suite) if results is not None else None
    with _exclusive(out), BenchStore(out) as bench:
        # Before anything is written: a finished run of another config (a record, or a cell
        # folder from before the suite changed) must not be counted as the suite's cell.
        recorded = {c.key: res.matching(c) for c in cells} if res is not None else {}
        finished = {c.key: _finished_cell(out / c.relpath, c) for c in cells}
        _record_suite(bench, suite, res)

        def export(c: Cell) -> None:
            if res is not None:
                res.write(c, local_record(out, c, bench.cells()))

        for c in cells:
            bench.ensure_cell(c.task, c.method, c.seed, c.relpath)
        bench.prune({c.key for c in cells})
        todo: list[Cell] = []
        skipped = from_results = 0
        for c in cells:
            # what is done is marked done whatever `only` selects, so the folder's status
            # (and its report) tells the whole suite's state
            record = recorded.get(c.key)
            if record is not None:
                bench.set_status(c.key, "done", wall_s=record["provenance"].get("wall_s"))
                from_results += 1
                continue
            if finished[c.key]:
                bench.set_status(c.key, "done")
                export(c)  # a cell finished before this bench wrote results
                continue
            if only is not None and not only(c):
                continue
            why = _available(c)
            if why:
                bench.set_status(c.key, "skipped", error=why)
                skipped += 1
                continue
            todo.append(c)
        say(
            f"[bold]gpbt bench {suite.label}[/]: {len(cells)} cells "
            f"({len(suite.tasks)} tasks x {len(suite.methods)} methods x {len(suite.seeds)} "
            f"seeds), {len(todo)} to run, {skipped} skipped -> {out}"
            + (f"; {from_results} done in {res.folder}" if res is not None else "")
            + (f"; only the tasks {', '.join(chosen_tasks)}" if tasks else "")
            + (f"; only the methods {', '.join(chosen_methods)}" if methods else "")
        )
        if skipped:
            reasons = bench.cells().query("status == 'skipped'")["error"].unique()
            for r in reasons:
                say(f"  [yellow]skipped[/]: {r}")
        started = time.monotonic()
        if todo:
            if supervise:
                _run_supervised(todo, out, bench, say, on_event, watchdog_seconds, export)
            else:
                _run_inline(todo, out, bench, say, on_event, export)
        say(f"cells finished in {time.monotonic() - started:.0f} s; collecting")
        frames = collect(out, suite, res, bench.cells())
        bench.write_tables(frames)
        if res is not None:
            res.write_meta({k: bench.get_meta(k) for k in _META})
            say(f"results: {len(res.records)} cell records in {res.folder}")
        failed = bench.cells().query("status == 'failed'")
    _print_headline(frames["results"], suite, say)
    if len(failed):
        say(f"[red]{len(failed)} cells failed[/]; run the same command again to retry them")
    say(f"report: gpbt report {out}")
    return out


def _finished_cell(folder: Path, cell: Cell) -> bool:
    """Whether the cell's folder holds its finished run; an error if that run had another
    config."""
    if not cell_done(folder):
        return False
    with ExperimentStore(folder) as store:
        stored = store.read_config() or {}
    check_same_config(cell, stored, folder, "delete that cell folder")
    return True


def _exclusive(out: Path):
    """One runner per bench folder: two would train the same cells into the same stores."""
    from gpbt.engines.lock import hold_folder

    return hold_folder(out, "bench")


_META = ("suite", "created", "machine", "commit", "invocations")


def _record_suite(bench: BenchStore, suite: Suite, res: ResultsFolder | None = None) -> None:
    bench.set_meta("suite", suite.to_dict())
    # the report of this folder reads the cells done in the results folder from there
    bench.set_meta("results", str(res.folder.resolve()) if res is not None else None)
    if bench.get_meta("created") is None:
        bench.set_meta("created", time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    bench.set_meta("machine", machine())
    bench.set_meta("commit", git_commit())
    # every invocation, so a bench continued across commits says which ran when; the id keeps
    # two invocations in the same second apart when the results folder merges histories
    history = bench.get_meta("invocations") or []
    history.append(
        {
            "at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "commit": git_commit(),
            "suite": suite.label,
            "id": uuid.uuid4().hex[:12],
        }
    )
    bench.set_meta("invocations", history)
    if res is not None:
        # suite.json now, not only when the bench ends: a long suite is committed cell by cell
        # across sessions, and `gpbt report RESULTS` must read it before the last cell is done
        res.write_meta({k: bench.get_meta(k) for k in _META})


def _printer(enabled: bool):
    if not enabled:
        return lambda text: None
    from rich.console import Console

    console = Console()
    return console.print


def _cell_line(c: Cell, summary, wall: float, n: int, total: int) -> str:
    def num(x) -> str:
        return "nan" if x is None else f"{x:.4g}"

    return (
        f"[{n}/{total}] {c.task} | {c.method} | seed {c.seed}: best "
        f"{num(summary['best_score'])}, population mean {num(summary['population_mean'])}, "
        f"exploits {summary['exploits']} ({wall:.0f} s)"
    )


# ---------------------------------------------------------------------------------------------
# running cells
# ---------------------------------------------------------------------------------------------
# Compiled agents of in-process runs, kept across run_suite calls (a notebook or a test that
# runs several benches compiles each program once).
_INLINE_AGENTS: dict = {}


def _run_inline(todo, out: Path, bench: BenchStore, say, on_event, export) -> None:
    agents = _INLINE_AGENTS
    for n, c in enumerate(todo, 1):
        bench.set_status(c.key, "running", attempt=True)
        t0 = time.monotonic()

        def emit(event, c=c):
            if on_event is not None:
                on_event({**event, "cell": c.key})

        try:
            summary = run_cell(c.kind, c.config, out / c.relpath, emit, agents)
        except BaseException as err:
            bench.set_status(c.key, "interrupted", error=f"{type(err).__name__}: {err}")
            raise
        wall = time.monotonic() - t0
        bench.set_status(c.key, "done", wall_s=wall)
        export(c)
        say(_cell_line(c, summary, wall, n, len(todo)))


def _worker(cells: list[dict], out: str, events) -> None:
    """The worker process: run the given cells in order, report everything on `events`."""
    import signal

    from gpbt.engines.children import die_with_parent

    die_with_parent()  # a killed `gpbt bench` must not leave its cells training on

    # Ctrl-C reaches the whole process group; the parent handles it (kills this worker and
    # marks the cell interrupted), so the worker must not mistake it for a failed cell.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    agents: dict = {}
    for c in cells:
        key = (c["task"], c["method"], c["seed"])
        events.put({"type": "cell_start", "cell": key})
        t0 = time.monotonic()
        try:
            summary = run_cell(
                c["kind"],
                c["config"],
                Path(out) / c["relpath"],
                lambda e, key=key: events.put({**e, "cell": key}),
                agents,
            )
        except BaseException as err:  # one bad cell must not stop the others
            events.put(
                {
                    "type": "cell_error",
                    "cell": key,
                    "message": f"{type(err).__name__}: {err}",
                    "traceback": traceback.format_exc(),
                }
            )
            continue
        events.put(
            {"type": "cell_done", "cell": key, "summary": summary, "wall": time.monotonic() - t0}
        )
    events.put({"type": "worker_done"})


def _run_supervised(todo, out: Path, bench: BenchStore, say, on_event, watchdog, export) -> None:
    """Run the cells in one watched worker (gpbt.engines.supervisor); when the worker dies or
    hangs, start a new one on the cells still to do, the interrupted one resuming from its
    checkpoint, and give up on a cell after MAX_CELL_ATTEMPTS tries."""
    by_key = {c.key: c for c in todo}
    remaining = list(todo)
    attempts = {c.key: 0 for c in todo}
    finished = 0
    total = len(todo)

    def cell_watchdog(key) -> float:
        return watchdog or by_key[key].config.get("watchdog_seconds", 600)

    dog = Watchdog(watchdog or 600)
    while remaining:
        payload = [
            {
                "task": c.task,
                "method": c.method,
                "seed": c.seed,
                "kind": c.kind,
                "config": c.config,
                "relpath": c.relpath,
            }
            for c in remaining
        ]
        current = None

        def handle(ev: dict) -> None:
            nonlocal current, remaining, finished
            if on_event is not None:
                on_event(ev)
            kind = ev["type"]
            key = tuple(ev["cell"])
            if kind == "cell_start":
                current = key
                attempts[key] += 1
                # each cell starts over: importing and building its population first
                dog.restart(cell_watchdog(key))
                bench.set_status(key, "running", attempt=True)
            elif kind == "cell_done":
                finished += 1
                bench.set_status(key, "done", wall_s=ev["wall"])
                export(by_key[key])
                remaining = [c for c in remaining if c.key != key]
                say(_cell_line(by_key[key], ev["summary"], ev["wall"], finished, total))
                current = None
            elif kind == "cell_error":
                remaining = [c for c in remaining if c.key != key]
                bench.set_status(key, "failed", error=ev["message"])
                say(f"[red]cell failed[/] {key}: {ev['message']}")
                say(ev["traceback"])
                current = None
            elif kind == "resumed":
                say(f"  {key[0]} | {key[1]} | seed {key[2]}: resumed at gen {ev['generation']}")

        try:
            end = watch_child(
                _worker,
                (payload, str(out)),
                watchdog=dog,
                on_event=handle,
                final=("worker_done",),
                what="worker process",
            )
        except KeyboardInterrupt:
            if current is not None:
                bench.set_status(current, "interrupted")
            say("[yellow]interrupted[/]: run the same command again to continue")
            raise
        if end.problem is None:
            if on_event is not None:
                on_event(end.final)
            break
        if current is None:
            if not remaining:
                break
            current = remaining[0].key
            attempts[current] += 1
        say(f"[yellow]worker restarted[/] ({end.problem}) during {current}")
        if attempts[current] >= MAX_CELL_ATTEMPTS:
            bench.set_status(current, "failed", error=end.problem)
            remaining = [c for c in remaining if c.key != current]
        else:
            bench.set_status(current, "interrupted", error=end.problem)


# ---------------------------------------------------------------------------------------------
# collecting the cells into the bench tables
# ---------------------------------------------------------------------------------------------
def collect(
    out: str | Path,
    suite: Suite,
    results: ResultsFolder | None = None,
    cells: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """The bench tables (see gpbt.bench.store) from every finished cell: its record in the
    results folder when it has one, else a record made from its experiment store.

    Both go through the same record (gpbt.bench.record), so a report rebuilt from the results
    folder alone has the same tables. `cells`: the bench's cell table (wall time, attempts).
    """
    out = Path(out)
    records = []
    for c in suite.cells():
        found = results.matching(c) if results is not None else None
        if found is None and cell_done(out / c.relpath):
            found = local_record(out, c, cells)
        if found is not None:
            records.append(found)
    return frames_from_records(records, suite)


def local_record(out: Path, c: Cell, cells: pd.DataFrame | None = None) -> dict:
    """The record of a finished cell of this bench folder, with the runner's provenance."""
    prov: dict[str, Any] = {"machine": machine()}
    if cells is not None and len(cells):
        row = cells[(cells["task"] == c.task) & (cells["method"] == c.method)]
        row = row[row["seed"] == c.seed]
        if len(row):
            prov["wall_s"] = _number(row.iloc[0]["wall_s"])
            prov["attempts"] = int(row.iloc[0]["attempts"])
    return cell_record(load(out / c.relpath), c, prov)


def _number(v: Any) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _print_headline(results: pd.DataFrame, suite: Suite, say) -> None:
    if not len(results):
        return
    from gpbt.bench import stats

    table = stats.headline(results, suite.score, suite.score_ranges(), reps=1000)
    say(f"[bold]IQM of normalised {suite.score}[/] (95% stratified-bootstrap interval):")
    for _, r in table.iterrows():
        say(
            f"  {r['method']:<22} {r['iqm']:.3f} [{r['iqm_lo']:.3f}, {r['iqm_hi']:.3f}]  "
            f"mean rank {r['mean_rank']:.2f}  ({int(r['runs'])} runs)"
        )
