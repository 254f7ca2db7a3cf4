"""`gpbt replay FOLDER`: re-derive every decision of a run from its stored scores and compare.

The scheduler is pure and seeded, so feeding it the recorded scores in the recorded order must
reproduce the decision log exactly: who was paired with whom, who copied whom, and each new
config. A mismatch means the log, the store or the scheduler changed since the run; the first
difference is reported. Lockstep (vector engine) runs are replayed generation by generation.
"""

from __future__ import annotations

import math
from pathlib import Path

from gpbt.config import build_scheduler, validate_config
from gpbt.core.decisions import Exploit
from gpbt.store import ExperimentStore, load


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return a == b


def replay(folder: str | Path, verbose: bool = False) -> tuple[bool, str]:
    exp = load(folder)
    if exp.config is None:
        return False, f"{folder} has no stored config; nothing to replay"
    cfg = validate_config(exp.config)
    if cfg["engine"] != "vector":
        return False, (
            f"replay re-derives lockstep (vector engine) runs; this run used the "
            f"'{cfg['engine']}' engine, whose event order depends on worker timing"
        )
    with ExperimentStore(folder) as store:
        records = store.decision_records()
    logged: dict[tuple[float, int], dict] = {
        (float(r["time"]), int(r["member"])): r for r in records
    }
    reports = exp.reports
    config_cols = [c for c in reports.columns if c.startswith("config.")]
    sched = build_scheduler(cfg)
    initial = sched.initial_population(cfg["population"])
    first_t = reports["time"].min()
    first = reports[reports["time"] == first_t].sort_values("member")
    for _, row in first.iterrows():
        stored = {c.removeprefix("config.").replace("/", "."): row[c] for c in config_cols}
        mine = initial[int(row["member"])]
        if not all(_same(mine[k], stored[k]) for k in mine):
            return False, (
                f"member {row['member']}: the seeded initial config {mine} differs "
                f"from the stored one {stored}"
            )
    times = sorted(reports["time"].unique())[:-1]  # no decisions after the last generation
    checked = 0
    lines = []
    for t in times:
        at_t = reports[reports["time"] == t]
        scores = {int(r["member"]): float(r["score"]) for _, r in at_t.iterrows()}
        for m, d in sched.on_generation(float(t), scores).items():
            rec = logged.get((float(t), m))
            if rec is None:
                return False, f"t={t:g} member {m}: decision {d.kind} is missing from the log"
            if rec["kind"] != d.kind:
                return False, (
                    f"t={t:g} member {m}: replay says {d.kind}, the log says {rec['kind']}"
                )
            if isinstance(d, Exploit):
                if rec["donor"] != d.donor:
                    return False, (
                        f"t={t:g} member {m}: replay copies member {d.donor}, the "
                        f"log says {rec['donor']}"
                    )
                for k, v in d.config.items():
                    if not _same(v, rec["new_config"][k]):
                        return False, (
                            f"t={t:g} member {m}: new {k} = {v} in replay, "
                            f"{rec['new_config'][k]} in the log"
                        )
                lines.append(f"t={t:g}: member {m} copied {d.donor} -> {d.config}")
            checked += 1
    extra = len(records) - checked
    if extra:
        return False, f"the log holds {extra} decisions the replay never made"
    msg = f"replay OK: {checked} decisions re-derived identically from {len(reports)} reports"
    if verbose:
        msg += "\n" + "\n".join(lines)
    return True, msg
