"""Issue 15, a test of section 6's mechanism: does one interval's score pick the member that ends
better?

    python benchmarks/pairwise_horizon.py --bench-root /work/runs/bench \\
        --suites long-impala long-ppo --json benchmarks/results/pairwise/horizon.json \\
        --plot docs/research/horizon.png

Every exploiting method (PBT, PB2, GPBT-PL and its variant) decides at each generation from the
members' scores over the last interval. Random search never exploits and never changes a
member's config, so in its runs each member's reports are the learning curve of one fixed
config, scored to the end by the suite's final greedy evaluation. On those runs this script
measures, at each generation g:

- `agree_1`: over pairs of members of one run, the share whose order by the score at g equals
  their order by the final evaluation (pairs tied on either are left out). 0.5 is a coin; an
  exploit at g copies the right member with about this probability.
- `agree_3`: the same with each member's mean score over the intervals ending at g-2, g-1, g
  (a fitness that looks past one interval).
- `rho_lr`: Spearman's correlation of log(lr) with the score at g, and `rho_lr_final` with the
  final evaluation: is the learning rate that scores best early the one that scores best at the
  end?

On the exploiting methods' runs it measures, at each generation g, what selection did to the
learning rate:

- `donor_lr_higher`: over the exploits at g (a member copying another's weights), the share in
  which the donor trained the last interval with a higher lr than the member it replaced.
  Above 0.5: selection pushes lr up; about 0.5: lr rides along with the weights it came with.
- `rho_lr`: as above, the members' log(lr) against their scores at g.

Each number is the mean over the task's random-search runs, with a 95% percentile bootstrap
over runs (2000 replicates, seed 0). It reads the bench folders' experiment stores read-only;
the folders stay on the machine that ran them, so the numbers are committed as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

REPS, SEED = 2000, 0
WINDOW = 3
METHOD = "random"
EXPLOITERS = ("pbt", "pb2", "gpbt-pl", "gpbt-pl-escape")


def agreement(early: np.ndarray, final: np.ndarray) -> tuple[int, int]:
    """(pairs ordered the same by `early` and `final`, pairs untied on both)."""
    same = total = 0
    for i in range(len(early)):
        for j in range(i + 1, len(early)):
            a, b = early[i] - early[j], final[i] - final[j]
            if a == 0 or b == 0 or not (math.isfinite(a) and math.isfinite(b)):
                continue
            total += 1
            same += (a > 0) == (b > 0)
    return same, total


def run_table(reports: pd.DataFrame, final, param: str = "lr") -> pd.DataFrame:
    """One row per generation of one run: agree_1, agree_3, rho_lr, rho_lr_final (`param`
    stands in for lr; it must be positive, its log is taken)."""
    scores = reports.pivot(index="time", columns="member", values="score").sort_index()
    lr = reports.groupby("member")[f"config.{param}"].first().reindex(scores.columns)
    lr = lr.to_numpy(float)
    final = np.asarray(final, dtype=float)[scores.columns.to_numpy()]
    window = scores.rolling(WINDOW, min_periods=1).mean()
    rho_final = spearmanr(np.log(lr), final).statistic
    rows = []
    for g, t in enumerate(scores.index):
        s1, s3 = scores.loc[t].to_numpy(float), window.loc[t].to_numpy(float)
        a1, n1 = agreement(s1, final)
        a3, n3 = agreement(s3, final)
        rows.append(
            {
                "generation": g + 1,
                "time": float(t),
                "agree_1": a1 / n1 if n1 else math.nan,
                "agree_3": a3 / n3 if n3 else math.nan,
                "rho_lr": spearmanr(np.log(lr), s1).statistic,
                "rho_lr_final": rho_final,
            }
        )
    return pd.DataFrame(rows)


def exploit_table(
    reports: pd.DataFrame, decisions: pd.DataFrame, param: str = "lr"
) -> pd.DataFrame:
    """One row per generation of one exploiting run: donor_lr_higher, rho_lr."""
    lr = reports.pivot(index="time", columns="member", values=f"config.{param}").sort_index()
    scores = reports.pivot(index="time", columns="member", values="score").sort_index()
    copies = decisions[
        (decisions["kind"] == "exploit") & (decisions["donor"] != decisions["member"])
    ]
    rows = []
    for g, t in enumerate(lr.index):
        at = copies[copies["time"] == t]
        higher = total = 0
        for d in at.itertuples():
            donor, own = lr.loc[t, int(d.donor)], lr.loc[t, int(d.member)]
            if donor != own:
                total += 1
                higher += donor > own
        x, y = np.log(lr.loc[t].to_numpy(float)), scores.loc[t].to_numpy(float)
        varied = np.ptp(x) > 0 and np.ptp(y) > 0
        rows.append(
            {
                "generation": g + 1,
                "time": float(t),
                "exploits": total,
                "donor_lr_higher": higher / total if total else math.nan,
                "rho_lr": spearmanr(x, y).statistic if varied else math.nan,
            }
        )
    return pd.DataFrame(rows)


def mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    x = x[np.isfinite(x)]
    if not len(x):
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(SEED)
    boot = rng.choice(x, size=(REPS, len(x))).mean(axis=1)
    return float(x.mean()), float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def task_summary(runs: list[pd.DataFrame]) -> list[dict]:
    """Per generation, each measure's mean over runs with its 95% interval."""
    frame = pd.concat([r.assign(run=i) for i, r in enumerate(runs)])
    out = []
    for g, at in frame.groupby("generation"):
        row: dict = {"generation": int(g), "time": float(at["time"].iloc[0]), "runs": len(at)}
        for col in [c for c in at.columns if c not in ("generation", "time", "run")]:
            m, lo, hi = mean_ci(at[col].to_numpy(float))
            row[col] = [m, lo, hi]
        out.append(row)
    return out


def windows(runs: list[pd.DataFrame]) -> list[dict]:
    """donor_lr_higher pooled over exploits in the first, middle and last third of the run
    (a bootstrap over runs for the interval), and rho_lr's mean there."""
    frame = pd.concat([r.assign(run=i) for i, r in enumerate(runs)])
    n = int(frame["generation"].max())
    thirds = np.array_split(np.arange(1, n + 1), 3)
    cuts = [(int(part[0]), int(part[-1])) for part in thirds if len(part)]
    out = []
    rng = np.random.default_rng(SEED)
    for lo, hi in cuts:
        part = frame[(frame["generation"] >= lo) & (frame["generation"] <= hi)]
        part = part.assign(higher=part["donor_lr_higher"].fillna(0) * part["exploits"])
        per_run = part.groupby("run")[["higher", "exploits"]].sum()
        h, e = per_run["higher"].to_numpy(float), per_run["exploits"].to_numpy(float)
        point = h.sum() / e.sum() if e.sum() else math.nan
        idx = rng.integers(0, len(h), size=(REPS, len(h)))
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = h[idx].sum(1) / e[idx].sum(1)
        boot = boot[np.isfinite(boot)]
        ci = [float(np.quantile(boot, q)) for q in (0.025, 0.975)] if len(boot) else [math.nan] * 2
        out.append(
            {
                "from": lo,
                "to": hi,
                "exploits": int(e.sum()),
                "donor_lr_higher": [point, *ci],
                "rho_lr": float(part["rho_lr"].mean()),
            }
        )
    return out


def read_runs(
    root: Path, suite: str, method: str, param: str = "lr"
) -> dict[str, list[pd.DataFrame]]:
    """The method's finished runs of a suite, per task, through run_table (random search) or
    exploit_table (an exploiting method)."""
    from gpbt.store import load

    by_task: dict[str, list[pd.DataFrame]] = {}
    for folder in sorted((root / suite).glob(f"*/{method}/seed*")):
        exp = load(folder)
        final = exp.state("final_evaluation")
        if final is None or f"config.{param}" not in exp.reports.columns:
            continue  # unfinished, or a space without the parameter
        task = f"{suite}/{folder.parent.parent.name}"
        if method == METHOD:
            table = run_table(exp.reports, final["returns"], param)
        else:
            table = exploit_table(exp.reports, exp.decisions, param)
        by_task.setdefault(task, []).append(table)
    return by_task


def plot(summary: dict, selection: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(summary)
    fig, axes = plt.subplots(2, len(tasks), figsize=(3.2 * len(tasks), 5.6), squeeze=False)
    for k, task in enumerate(tasks):
        rows = summary[task]["generations"]
        g = [r["generation"] for r in rows]
        ax = axes[0][k]
        for col, label, color in (
            ("agree_1", "1 interval", "C3"),
            ("agree_3", "3 intervals", "C0"),
        ):
            m = np.array([r[col] for r in rows])
            ax.plot(g, m[:, 0], color=color, label=label)
            ax.fill_between(g, m[:, 1], m[:, 2], color=color, alpha=0.2)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_ylim(0.2, 1.0)
        ax.set_title(task.replace("@population=", " pop "), fontsize=8)
        if k == 0:
            ax.set_ylabel("P(order at g = final order)")
            ax.legend(fontsize=7)
        ax = axes[1][k]
        m = np.array([r["rho_lr"] for r in rows])
        ax.plot(g, m[:, 0], color="C2", label="random: lr vs score at g")
        ax.fill_between(g, m[:, 1], m[:, 2], color="C2", alpha=0.2)
        for method, color in zip(EXPLOITERS, ("C1", "C4", "C5", "C7"), strict=True):
            rows_m = (selection.get(task) or {}).get(method, {}).get("generations", [])
            if rows_m:
                gm = [r["generation"] for r in rows_m]
                ax.plot(gm, [r["rho_lr"][0] for r in rows_m], color=color, lw=0.8, label=method)
        f = rows[-1]["rho_lr_final"]
        ax.axhline(f[0], color="k", lw=1, label="random: lr vs final evaluation")
        ax.axhspan(f[1], f[2], color="k", alpha=0.08)
        ax.axhline(0, color="grey", lw=0.8, ls=":")
        ax.set_ylim(-1, 1)
        ax.set_xlabel("generation")
        if k == 0:
            ax.set_ylabel("Spearman(log lr, score at g)")
            ax.legend(fontsize=6)
    fig.suptitle(
        "top: in random search, one interval's score orders members as the final evaluation "
        "does;\nbottom: lr predicts the score in random search, not once members share weights",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rounded(x):
    """4 decimals are plenty for shares and correlations, and keep the committed file small."""
    if isinstance(x, float):
        return None if math.isnan(x) else round(x, 4)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench-root", required=True, help="folder holding the suites' bench folders")
    p.add_argument("--suites", nargs="+", default=["long-impala", "long-ppo"])
    p.add_argument("--json", help="write the summary here")
    p.add_argument("--plot", help="write the figure here")
    p.add_argument("--param", default="lr", help="the hyperparameter to follow (default lr)")
    args = p.parse_args(argv)
    summary: dict = {}
    selection: dict = {}
    for suite in args.suites:
        for task, runs in read_runs(Path(args.bench_root), suite, METHOD, args.param).items():
            summary[task] = {"runs": len(runs), "generations": task_summary(runs)}
        for method in EXPLOITERS:
            for task, runs in read_runs(Path(args.bench_root), suite, method, args.param).items():
                selection.setdefault(task, {})[method] = {
                    "runs": len(runs),
                    "generations": task_summary(runs),
                    "windows": windows(runs),
                }
    if not summary:
        print(f"no finished {METHOD} runs under {args.bench_root}", file=sys.stderr)
        return 2
    for task, s in summary.items():
        rows = s["generations"]
        pick = [r for r in rows if r["generation"] in (1, 2, 5, 10, len(rows) // 2, len(rows))]
        print(f"{task} ({s['runs']} runs)")
        for r in pick:
            print(
                f"  g{r['generation']:>3}: agree_1 {r['agree_1'][0]:.2f} "
                f"[{r['agree_1'][1]:.2f}, {r['agree_1'][2]:.2f}]  agree_3 {r['agree_3'][0]:.2f}  "
                f"rho_lr {r['rho_lr'][0]:+.2f}  (final {r['rho_lr_final'][0]:+.2f})"
            )
    print("\nexploiting methods: P(donor's lr > replaced member's lr), Spearman(log lr, score)")
    for task, by_method in selection.items():
        print(task)
        for method, s in by_method.items():
            cells = "  ".join(
                f"g{w['from']}-{w['to']}: {w['donor_lr_higher'][0]:.2f} "
                f"[{w['donor_lr_higher'][1]:.2f}, {w['donor_lr_higher'][2]:.2f}] "
                f"(n {w['exploits']}) rho {w['rho_lr']:+.2f}"
                for w in s["windows"]
            )
            print(f"  {method:15s} ({s['runs']} runs) {cells}")
    if args.json:
        doc = {"random": summary, "exploiting": selection}
        Path(args.json).write_text(json.dumps(_rounded(doc), separators=(",", ":")) + "\n")
    if args.plot:
        plot(summary, selection, Path(args.plot))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
