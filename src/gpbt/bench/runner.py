"""`gpbt bench SUITE`: run every (task, method, seed) cell of a suite, resumably, then collect.

Layout of a bench folder:

    <bench>/bench.sqlite                       the suite, cell statuses, collected tables
    <bench>/<task>/<method>/seed<k>/           one experiment folder per cell (gpbt.store)

A cell is done when its store has the state "summary"; done cells are skipped, so running the
same command again continues an interrupted bench, and `--seeds 10` after `--seeds 5` only runs
the new seeds. A cell that was started and interrupted resumes from its last checkpoint (the
vector engine re-runs from there deterministically, so the result is what an uninterrupted run
gives).

Cells run one after another in ONE worker process (spawned, so the parent never imports JAX):
compiled agents are shared between cells, which saves seconds per cell. The parent supervises
it like `run_vector` supervises its child: a worker that reports no progress for
`watchdog_seconds` (a rare XLA hang on small CPU machines) or dies is restarted, and the cell it
was on resumes from its checkpoint; a cell that fails repeatedly is marked failed and the bench
goes on with the others.
"""

from __future__ import annotations

import importlib.util
import math
import multiprocessing as mp
import queue
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpbt.bench.cell import cell_done, run_cell
from gpbt.bench.store import BenchStore
from gpbt.bench.suite import Cell, Suite, load_suite
from gpbt.space import Space
from gpbt.store import load

MAX_CELL_ATTEMPTS = 3
STARTUP_WATCHDOG = 240.0  # seconds for a cell to build its initial population (compile included)


def _available(cell: Cell) -> str | None:
    """Why a cell cannot run on this install (None: it can)."""
    if cell.kind == "vector" and cell.config.get("agent") == "impala":
        if importlib.util.find_spec("gpbt.rl.impala") is None:
            return "agent 'impala' is not available in this install (gpbt.rl.impala missing)"
    if cell.kind == "vector" and str(cell.config.get("env", "")).startswith("brax"):
        if importlib.util.find_spec("brax") is None:
            return "brax is not installed (pip install 'gpbt[brax]')"
    return None


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
) -> Path:
    """Run the suite's pending cells into `out`, collect the tables; returns the bench folder.

    `supervise=False` runs the cells in this process (tests); `only` restricts to some cells;
    `on_event` sees every progress event (tests use it to interrupt a run on purpose).
    """
    if not isinstance(suite, Suite):
        suite = load_suite(suite, seeds=seeds)
    out = Path(out) if out else Path("runs") / f"bench-{suite.label.replace(':', '-')}"
    say = _printer(progress)
    cells = suite.cells()
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out), BenchStore(out) as bench:
        _record_suite(bench, suite)
        for c in cells:
            bench.ensure_cell(c.task, c.method, c.seed, c.relpath)
        bench.prune({c.key for c in cells})
        todo: list[Cell] = []
        skipped = 0
        for c in cells:
            if only is not None and not only(c):
                continue
            folder = out / c.relpath
            if cell_done(folder):
                bench.set_status(c.key, "done")
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
        )
        if skipped:
            reasons = bench.cells().query("status == 'skipped'")["error"].unique()
            for r in reasons:
                say(f"  [yellow]skipped[/]: {r}")
        started = time.monotonic()
        if todo:
            if supervise:
                _run_supervised(todo, out, bench, say, on_event, watchdog_seconds)
            else:
                _run_inline(todo, out, bench, say, on_event)
        say(f"cells finished in {time.monotonic() - started:.0f} s; collecting")
        frames = collect(out, suite)
        bench.write_tables(frames)
        failed = bench.cells().query("status == 'failed'")
    _print_headline(frames["results"], suite, say)
    if len(failed):
        say(f"[red]{len(failed)} cells failed[/]; run the same command again to retry them")
    say(f"report: gpbt report {out}")
    return out


def _exclusive(out: Path):
    """One runner per bench folder: two would train the same cells into the same stores."""
    from gpbt.lock import hold_folder

    return hold_folder(out, "bench")


def _record_suite(bench: BenchStore, suite: Suite) -> None:
    import platform

    bench.set_meta("suite", suite.to_dict())
    if bench.get_meta("created") is None:
        bench.set_meta("created", time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    bench.set_meta(
        "machine",
        {"platform": platform.platform(), "processor": platform.processor() or "", "cpus": _cpus()},
    )
    bench.set_meta("commit", _commit())
    # every invocation, so a bench continued across commits says which ran when
    history = bench.get_meta("invocations") or []
    history.append(
        {"at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": _commit(), "suite": suite.label}
    )
    bench.set_meta("invocations", history)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _printer(enabled: bool):
    if not enabled:
        return lambda text: None
    from rich.console import Console

    console = Console()
    return console.print


def _cell_line(c: Cell, summary: dict, wall: float, n: int, total: int) -> str:
    return (
        f"[{n}/{total}] {c.task} | {c.method} | seed {c.seed}: best "
        f"{summary['best_final_eval_return']:.4g}, population mean "
        f"{summary['population_mean_final_eval_return']:.4g}, exploits {summary['exploits']} "
        f"({wall:.0f} s)"
    )


# ---------------------------------------------------------------------------------------------
# running cells
# ---------------------------------------------------------------------------------------------
# Compiled agents of in-process runs, kept across run_suite calls (a notebook or a test that
# runs several benches compiles each program once).
_INLINE_AGENTS: dict = {}


def _run_inline(todo, out: Path, bench: BenchStore, say, on_event) -> None:
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


def _run_supervised(todo, out: Path, bench: BenchStore, say, on_event, watchdog) -> None:
    ctx = mp.get_context("spawn")  # never fork a process that may hold JAX state
    by_key = {c.key: c for c in todo}
    remaining = list(todo)
    attempts = {c.key: 0 for c in todo}
    finished = 0
    total = len(todo)
    while remaining:
        events = ctx.Queue()
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
        proc = ctx.Process(target=_worker, args=(payload, str(out), events), daemon=True)
        proc.start()
        current = None
        initialised = False
        last = time.monotonic()
        problem = None
        try:
            while True:
                limit = watchdog or (
                    by_key[current].config.get("watchdog_seconds", 600) if current else 600
                )
                if current is not None and not initialised:
                    # Hangs seen on small CPU machines (all threads idle in a futex) came while
                    # a cell built its initial population; that step takes seconds, so a
                    # stuck start is detected after STARTUP_WATCHDOG, not the full limit.
                    limit = min(limit, STARTUP_WATCHDOG)
                try:
                    ev = events.get(timeout=1.0)
                except queue.Empty:
                    if not proc.is_alive():
                        problem = f"the worker process died (exit code {proc.exitcode})"
                        break
                    if time.monotonic() - last > limit:
                        problem = f"no progress for {limit:.0f} s"
                        break
                    continue
                last = time.monotonic()
                if on_event is not None:
                    on_event(ev)
                kind = ev["type"]
                if kind == "worker_done":
                    break
                key = tuple(ev["cell"])
                if kind == "initialised":
                    initialised = True
                elif kind == "cell_start":
                    initialised = False
                    current = key
                    attempts[key] += 1
                    bench.set_status(key, "running", attempt=True)
                elif kind == "cell_done":
                    finished += 1
                    bench.set_status(key, "done", wall_s=ev["wall"])
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
        except KeyboardInterrupt:
            proc.kill()
            proc.join()
            if current is not None:
                bench.set_status(current, "interrupted")
            say("[yellow]interrupted[/]: run the same command again to continue")
            raise
        if problem is None:
            proc.join(timeout=30)
            break
        proc.kill()
        proc.join()
        if current is None:
            if not remaining:
                break
            current = remaining[0].key
            attempts[current] += 1
        say(f"[yellow]worker restarted[/] ({problem}) during {current}")
        if attempts[current] >= MAX_CELL_ATTEMPTS:
            bench.set_status(current, "failed", error=problem)
            remaining = [c for c in remaining if c.key != current]
        else:
            bench.set_status(current, "interrupted", error=problem)


# ---------------------------------------------------------------------------------------------
# collecting the cells into the bench tables
# ---------------------------------------------------------------------------------------------
def collect(out: str | Path, suite: Suite) -> dict[str, pd.DataFrame]:
    """Read every finished cell's store into the bench tables (see gpbt.bench.store)."""
    out = Path(out)
    rows, curves, diversity, schedules, timings = [], [], [], [], []
    for c in suite.cells():
        folder = out / c.relpath
        if not cell_done(folder):
            continue
        exp = load(folder)
        ident = {"task": c.task, "method": c.method, "seed": c.seed}
        r, cur, div, sch, tim = _collect_cell(exp, c)
        rows.append({**ident, **r})
        for part, dest in ((cur, curves), (div, diversity), (sch, schedules), (tim, timings)):
            dest.extend({**ident, **x} for x in part)
    results = pd.DataFrame(rows)
    if len(results):
        # the suite's own order of tasks and methods, which tables and plots keep
        order_t = {t: i for i, t in enumerate(suite.task_names())}
        order_m = {m: i for i, m in enumerate(suite.method_names())}
        results = (
            results.assign(_t=results["task"].map(order_t), _m=results["method"].map(order_m))
            .sort_values(["_t", "_m", "seed"])
            .drop(columns=["_t", "_m"])
            .reset_index(drop=True)
        )
    return {
        "results": results,
        "curves": pd.DataFrame(curves),
        "diversity": pd.DataFrame(diversity),
        "schedules": pd.DataFrame(schedules),
        "timings": pd.DataFrame(timings),
    }


def _collect_cell(exp, c: Cell):
    import json

    cfg = exp.config or c.config
    space = Space.from_dict(cfg["space"]) if cfg.get("space") else None
    reports = exp.reports
    summary = exp.state("summary")
    final = exp.state("final_evaluation") or {"returns": []}
    initial = exp.state("bench_initial") or {}
    tims = exp.state("bench_timings") or []
    times = sorted(reports["time"].unique())
    # learning curves from the training scores every member reported
    cur = []
    best_so_far = -math.inf
    for t in times:
        s = reports.loc[reports["time"] == t, "score"].to_numpy(dtype=float)
        fin = s[np.isfinite(s)]
        best = float(fin.max()) if len(fin) else math.nan
        if math.isfinite(best):
            best_so_far = max(best_so_far, best)
        cur.append(
            {
                "time": float(t),
                "best": best,
                "mean": float(fin.mean()) if len(fin) else math.nan,
                "best_so_far": best_so_far if math.isfinite(best_so_far) else math.nan,
            }
        )
    bsf = np.array([x["best_so_far"] for x in cur], dtype=float)
    auc = float(np.nanmean(bsf)) if np.isfinite(bsf).any() else math.nan
    # diversity: configs reported at t are the ones that trained up to t (before t's exploits)
    div = []
    config_cols = [col for col in reports.columns if col.startswith("config.")]
    if space is not None:
        if initial.get("configs"):
            div.append({"time": 0.0, "diversity": space.diversity(initial["configs"])})
        for t in times:
            frame = reports.loc[reports["time"] == t, config_cols]
            configs = [
                Space.nest({k.removeprefix("config."): v for k, v in row.items()})
                for row in frame.to_dict("records")
            ]
            div.append({"time": float(t), "diversity": space.diversity(configs)})
    # the schedule the final best member's line of weights actually followed
    sch = []
    best_member = int(summary.get("best_member", 0))
    hops = exp.lineage(best_member)
    hop_times = [t for t, _ in hops[1:]]
    hop_members = [m for _, m in hops]
    for t in times:
        k = sum(1 for ht in hop_times if t <= ht)
        holder = hop_members[min(k, len(hop_members) - 1)]
        row = reports[(reports["member"] == holder) & (reports["time"] == t)]
        if not len(row):
            continue
        for col in config_cols:
            name = col.removeprefix("config.")
            value = row.iloc[0][col]
            unit = math.nan
            if space is not None and name in space.params:
                try:
                    unit = float(space.params[name].to_unit(value))
                except (TypeError, ValueError):
                    pass
            sch.append(
                {
                    "time": float(t),
                    "param": name,
                    "value": float(value) if _is_number(value) else math.nan,
                    "label": str(value),
                    "unit": unit,
                }
            )
    totals = {
        k: float(sum(x[k] for x in tims))
        for k in ("train_s", "manage_s", "scheduler_s", "gather_s")
    }
    returns = np.asarray(final.get("returns") or [math.nan], dtype=float)
    row = {
        "final_best": float(np.nanmax(returns)) if np.isfinite(returns).any() else math.nan,
        "final_mean": float(np.nanmean(returns)) if np.isfinite(returns).any() else math.nan,
        "auc": auc,
        "final_train_best": cur[-1]["best"] if cur else math.nan,
        "exploits": int(summary.get("exploits", 0)),
        "population": int(cfg.get("population", reports["member"].nunique())),
        "total_steps": float(cfg.get("total_steps", max(times) if times else 0)),
        "perturbation_interval": float(cfg.get("perturbation_interval", 0)),
        "generations": len(tims),
        **totals,
        "initial_configs_hash": initial.get("configs_hash", ""),
        "initial_state_hash": initial.get("state_hash", ""),
        # the code at the cell's start (a resumed cell may finish under newer code; the
        # fairness audit compares starts)
        "code_hash": initial.get("code_hash", ""),
        "best_config": json.dumps(summary.get("best_config", {}), sort_keys=True),
    }
    tim = [{k: v for k, v in x.items()} for x in tims]
    return row, cur, div, sch, tim


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


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
