"""`gpbt replay FOLDER`: re-derive every decision of a run from its stored scores and compare.

The scheduler is pure and seeded, so feeding it the recorded scores in the recorded order must
reproduce the decision log exactly: who was paired with whom, who copied whom, and each new
config. A mismatch means the log, the store or the scheduler changed since the run; the first
difference is reported. Lockstep (vector engine) runs are replayed generation by generation;
asynchronous runs (the local engine, Ray Tune through gpbt's scheduler) report by report, in
the order the engine committed them (which is the order its scheduler saw them, whatever the
workers' timing was).
"""

from __future__ import annotations

import math
from pathlib import Path

from gpbt.engines import engine_named, engine_of, validate
from gpbt.engines.asynchronous import AsyncDriver
from gpbt.engines.lockstep import Lockstep, Trained
from gpbt.errors import FolderError
from gpbt.store import load


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return a == b


def _mismatch(t, m: int, d: dict, rec: dict | None) -> str | None:
    """The first way a replayed decision record `d` differs from the logged one, or None."""
    if rec is None:
        return f"t={t:g} member {m}: decision {d['kind']} is missing from the log"
    if rec["kind"] != d["kind"]:
        return f"t={t:g} member {m}: replay says {d['kind']}, the log says {rec['kind']}"
    if d["kind"] == "exploit":
        if rec["donor"] != d["donor"]:
            return (
                f"t={t:g} member {m}: replay copies member {d['donor']}, "
                f"the log says {rec['donor']}"
            )
        for k, v in d["new_config"].items():
            if not _same(v, rec["new_config"][k]):
                return (
                    f"t={t:g} member {m}: new {k} = {v} in replay, "
                    f"{rec['new_config'][k]} in the log"
                )
    return None


def _check_initial(initial: list[dict], reports, config_cols: list[str]) -> str | None:
    """Each member's first report must carry the seeded initial config."""
    for m, rows in reports.sort_values("time").groupby("member"):
        row = rows.iloc[0]
        stored = {c.removeprefix("config.").replace("/", "."): row[c] for c in config_cols}
        mine = initial[int(m)]
        if not all(_same(mine[k], stored[k]) for k in mine):
            return (
                f"member {m}: the seeded initial config {mine} differs from the stored one {stored}"
            )
    return None


def _replay_local(folder, cfg: dict, exp, verbose: bool, grid: bool) -> tuple[bool, str]:
    """An asynchronous run (the local engine, or Ray Tune through gpbt's scheduler): the
    recorded reports, in the order the engine committed them, through the engine's own
    asynchronous driver, with the engine's `grid` setting (Ray's generations fall on a grid)."""
    from gpbt.engines.local import STATE_KEY

    if "method" not in cfg or "space" not in cfg:
        return False, (
            "this run was started from Python with a scheduler object, so its stored config "
            "holds no method and space to rebuild the scheduler from; replay re-derives runs "
            "started from a config (gpbt run CONFIG, or run_local(config, folder))"
        )
    sched = validate(cfg).scheduler(max_time=cfg["total_steps"])
    if sched.synchronous:
        return False, (
            "replay re-derives asynchronous runs; this run waited for whole "
            "generations (pairing = 'sync' or synch = true), whose barriers the store does not "
            "record"
        )
    records = exp.decision_records()
    order = exp.report_order()
    state = exp.state(STATE_KEY) or {}
    failed = sorted(int(m) for m in (state.get("failed") or {}))
    if failed:
        return False, (
            f"member(s) {failed} failed during this run and were taken out of the population "
            "at a moment the store does not record, so the decisions after it cannot be "
            "re-derived"
        )
    logged = {(float(r["time"]), int(r["member"])): r for r in records}
    initial = sched.initial_population(int(cfg["population"]))
    config_cols = [c for c in exp.reports.columns if c.startswith("config.")]
    problem = _check_initial(initial, exp.reports, config_cols)
    if problem:
        return False, problem

    # the engine's own driver, fed the same reports
    driver = AsyncDriver(sched, grid=grid)

    def derived():
        for m, t, score in order:
            d = driver.on_result(m, t, score).decisions[m]
            if d.record is not None:  # not at a boundary: the engine logs nothing either
                yield t, m, d.record.to_dict()

    return _compare(derived(), logged, len(records), len(order), verbose)


def _compare(derived, logged: dict, n_logged: int, n_reports: int, verbose: bool):
    """Check each re-derived (time, member, decision), in order, against the log."""
    checked, lines = 0, []
    for t, m, d in derived:
        problem = _mismatch(t, m, d, logged.get((float(t), m)))
        if problem:
            return False, problem
        if d["kind"] == "exploit":
            lines.append(f"t={t:g}: member {m} copied {d['donor']} -> {d['new_config']}")
        checked += 1
    return _verdict(checked, n_logged, n_reports, lines, verbose)


def _verdict(checked: int, logged: int, reports: int, lines: list[str], verbose: bool):
    extra = logged - checked
    if extra:
        return False, f"the log holds {extra} decisions the replay never made"
    msg = f"replay OK: {checked} decisions re-derived identically from {reports} reports"
    if verbose:
        msg += "\n" + "\n".join(lines)
    return True, msg


def replay(folder: str | Path, verbose: bool = False) -> tuple[bool, str]:
    exp = load(folder)
    if exp.config is None:
        raise FolderError(
            f"{folder} holds no run to replay (no stored config); replay re-derives the "
            "decisions of a run started by `gpbt run`"
        )
    engine = engine_of(exp.config)
    if engine is not None and engine.supports("replay") and engine.driver == "asynchronous":
        # a scheduler adapter may store its scheduler's description beside the run's config
        # (Ray's does); the run's own keys rebuild the scheduler
        cfg = {k: v for k, v in exp.config.items() if k != "scheduler"}
        return _replay_local(folder, cfg, exp, verbose, grid=engine.grid)
    cfg = validate(exp.config)
    if not engine_named(cfg.engine).supports("replay"):
        raise FolderError(
            f"replay re-derives the runs of engines that record their decisions' order; "
            f"{folder} used the '{cfg['engine']}' engine, which does not"
        )
    records = exp.decision_records()
    logged: dict[tuple[float, int], dict] = {
        (float(r["time"]), int(r["member"])): r for r in records
    }
    reports = exp.reports
    config_cols = [c for c in reports.columns if c.startswith("config.")]
    sched = cfg.scheduler()
    initial = sched.initial_population(cfg["population"])
    problem = _check_initial(initial, reports, config_cols)
    if problem:
        return False, problem
    # The recorded scores through the same lockstep loop as the run: no decision after the
    # run's last generation, exploits in the same order.
    times = [float(t) for t in sorted(reports["time"].unique())]
    # The vector engine's last generation ends at int(total_steps). A run stopped before it
    # (killed, Ctrl-C, a crash) decided after its last stored generation too, so the loop is
    # given one more generation, whose scores the record does not hold: it ends there.
    stopped_at = times[-1] if times and times[-1] < int(cfg.total_steps) else None
    derived: list[tuple] = []

    def on_event(event: dict) -> None:
        derived.extend((event["time"], int(r["member"]), r) for r in event["decisions"])

    loop_times = times if stopped_at is None else [*times, math.inf]
    try:
        Lockstep(sched, RecordedScores(reports), loop_times, emit=on_event).run(initial)
    except _RecordEnds:
        pass
    note = ""
    if stopped_at is not None:
        note = f" (the run stopped after t={stopped_at:g} of {int(cfg.total_steps)})"
        if not any(float(t) == stopped_at for t, _ in logged):
            # Killed between writing that generation's reports and its decisions (two
            # transactions): those decisions were never recorded, and a resume redoes them.
            derived = [d for d in derived if float(d[0]) != stopped_at]
    ok, message = _compare(derived, logged, len(records), len(reports), verbose)
    if ok and note:
        first, _, rest = message.partition("\n")
        message = first + note + (f"\n{rest}" if rest else "")
    return ok, message


class _RecordEnds(Exception):
    """The lockstep loop asked for a generation the record of a stopped run does not hold."""


class RecordedScores:
    """A lockstep population that replays its stored scores instead of training: exploits and
    configs change nothing, since the scores that followed them are already recorded."""

    def __init__(self, reports) -> None:
        self.by_time = {
            t: {int(r["member"]): float(r["score"]) for _, r in rows.iterrows()}
            for t, rows in reports.groupby("time")
        }

    def train(self, generation: int, until) -> Trained:
        if until not in self.by_time:
            raise _RecordEnds(until)
        return Trained(self.by_time[until])

    def copy_members(self, index) -> None:
        pass

    def set_configs(self, configs) -> None:
        pass

    def save(self, generation: int, configs) -> None:
        pass
