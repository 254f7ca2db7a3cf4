"""Issue 25, the explore step's drift without selection: PBT's explore steps replayed on their
own, no exploit, no scores, so what they do to the learning rate is known apart from selection.

    python benchmarks/explore_null.py                     # both tables below, about a minute
    python benchmarks/explore_null.py --json out.json     # the numbers as JSON as well

Table 1 (the null): one member's lr after k = 5, 10, 19 explore steps of `gpbt.core.strategies
.Perturb` alone (each step perturbs the member's own last value, as a lineage that wins every
time would be), REPS seeded replicates, for two ranges (long-ppo's [1e-5, 1e-3] and the
corrected [1e-4, 1e-2] of tuning-dev.toml), two starts (PPO's discrete default 1e-3, and a
draw from the range's log-uniform prior) and five settings of the explore step:

- ray:        factors (1.2, 0.8), resample "prior" at p = 0.25 (today's pbt, Ray Tune's)
- ray-none:   factors (1.2, 0.8), no resample (the factors' own drift, alone)
- sym-prior:  factors (1.25, 0.8), resample "prior" at p = 0.25
- sym-local:  factors (1.25, 0.8), resample "local" at p = 0.25
- sym-none:   factors (1.25, 0.8), no resample

It reports the mean and the median of the final log10 lr, and the share of replicates that end
on the range's top edge.

Table 2 (the lineages): every committed record of a row whose explore is PBT's (pbt on long-ppo
and long-impala, pbt-paper-protocol on long-ppo; benchmarks/results/) holds its best member's
lineage, the config it trained with at every
generation. A generation whose config differs from the one before is one explore step (PBT
changes a lineage's config only when it exploits: copy the winner, then explore). Each record's
own number of steps is replayed with the "ray" setting from the lineage's own first lr, REPS_LINEAGE
replicates each; the mean final log10 lr of the replays (the prediction with no selection) is
set beside the lineages' observed final log10 lr.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from gpbt.core.space import Float, Space
from gpbt.core.strategies import ExploreContext, Perturb

REPS, REPS_LINEAGE, SEED = 4000, 1000, 0
STEPS = (5, 10, 19)
SETTINGS = {
    "ray": Perturb((1.2, 0.8), 0.25, "prior"),
    "ray-none": Perturb((1.2, 0.8), 0.25, "none"),
    "sym-prior": Perturb((1.25, 0.8), 0.25, "prior"),
    "sym-local": Perturb((1.25, 0.8), 0.25, "local"),
    "sym-none": Perturb((1.25, 0.8), 0.25, "none"),
}
RANGES = {"long-ppo [1e-5, 1e-3]": (1e-5, 1e-3), "corrected [1e-4, 1e-2]": (1e-4, 1e-2)}
RESULTS = Path(__file__).resolve().parent / "results"
# the rows whose explore step is Perturb's, as "ray" (pbt-paper-protocol: 4 of the 7 names)
LINEAGES = (("long-ppo", "pbt"), ("long-ppo", "pbt-paper-protocol"), ("long-impala", "pbt"))


def walk(strategy: Perturb, space: Space, start: float, steps: int, rng) -> list[float]:
    """The lr after each of `steps` explore steps from `start`, nothing selected."""
    config, out = {"lr": start}, []
    for _ in range(steps):
        ctx = ExploreContext(space, rng, 0.0, 0, 1, config, config, {}, 1.0)
        config = strategy.explore(ctx)[0]
        out.append(config["lr"])
    return out


def null_table(reps: int = REPS) -> list[dict]:
    rows = []
    for range_name, (low, high) in RANGES.items():
        space = Space({"lr": Float(low, high, log=True)})
        for start_name in ("default 1e-3", "log-uniform draw"):
            for setting, strategy in SETTINGS.items():
                rng = np.random.default_rng(SEED)
                paths = np.empty((reps, max(STEPS)))
                for r in range(reps):
                    start = 1e-3 if start_name.startswith("default") else space.sample(rng)["lr"]
                    paths[r] = np.log10(walk(strategy, space, start, max(STEPS), rng))
                for k in STEPS:
                    final = paths[:, k - 1]
                    rows.append(
                        {
                            "range": range_name,
                            "start": start_name,
                            "setting": setting,
                            "k": k,
                            "mean_log10_lr": float(final.mean()),
                            "median_log10_lr": float(np.median(final)),
                            "at_top": float(np.mean(final >= math.log10(high) - 1e-9)),
                        }
                    )
    return rows


def lineage_steps(record: dict) -> tuple[float, int, float]:
    """(first lr, explore steps, last lr) of a record's best lineage."""
    params = record["lineage"]["params"]
    names = sorted(params)
    configs = list(zip(*(params[n] for n in names), strict=True))
    steps = sum(a != b for a, b in zip(configs, configs[1:], strict=False))
    return float(params["lr"][0]), steps, float(params["lr"][-1])


def lineage_table(reps: int = REPS_LINEAGE) -> list[dict]:
    rows = []
    for suite, method in LINEAGES:
        paths = sorted((RESULTS / suite).glob(f"*/{method}/*.json"))
        records = [json.loads(p.read_text()) for p in paths]
        rng = np.random.default_rng(SEED)
        predicted, observed, steps = [], [], []
        for record in records:
            lr = record["config"]["space"]["lr"]
            space = Space({"lr": Float(lr["low"], lr["high"], log=True)})
            first, k, last = lineage_steps(record)
            finals = [walk(SETTINGS["ray"], space, first, k, rng)[-1] if k else first
                      for _ in range(reps)]  # fmt: skip
            predicted.append(float(np.mean(np.log10(finals))))
            observed.append(math.log10(last))
            steps.append(k)
        rows.append(
            {
                "suite": suite,
                "method": method,
                "records": len(records),
                "mean_steps": float(np.mean(steps)),
                "first_log10_lr": float(
                    np.mean([math.log10(lineage_steps(r)[0]) for r in records])
                ),
                "predicted_log10_lr": float(np.mean(predicted)),
                "observed_log10_lr": float(np.mean(observed)),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=REPS)
    parser.add_argument("--json", type=Path, help="write both tables here as JSON too")
    args = parser.parse_args()
    null = null_table(args.reps)
    print("| range | start | setting | k=5 mean / median | k=10 mean / median | "
          "k=19 mean / median | k=19 on the top edge |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for i in range(0, len(null), len(STEPS)):
        group = null[i : i + len(STEPS)]
        cells = [f"{r['mean_log10_lr']:.2f} / {r['median_log10_lr']:.2f}" for r in group]
        g = group[0]
        print(f"| {g['range']} | {g['start']} | {g['setting']} | " + " | ".join(cells)
              + f" | {group[-1]['at_top']:.0%} |")  # fmt: skip
    lineages = lineage_table()
    print()
    print("| suite | row | best lineages | explore steps (mean) | first log10 lr | predicted, "
          "no selection | observed |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in lineages:
        print(f"| {r['suite']} | {r['method']} | {r['records']} | {r['mean_steps']:.1f} | "
              f"{r['first_log10_lr']:.2f} | {r['predicted_log10_lr']:.2f} | "
              f"{r['observed_log10_lr']:.2f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"null": null, "lineages": lineages}, indent=1) + "\n")


if __name__ == "__main__":
    main()
