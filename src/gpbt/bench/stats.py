"""Statistics across tasks and seeds, after rliable (Agarwal et al., NeurIPS 2021), in numpy.

Implemented here rather than depending on `rliable` (and its `arch` dependency) because the few
estimators we need are short and this way every number in a report can be checked by hand; the
conventions are rliable's:

- Scores are normalised per task to [0, 1]-ish: `(x - lo) / (hi - lo)`, where `(lo, hi)` is the
  task's `score_range` from the suite when given (e.g. a random policy's return and a known
  good return), else the minimum and maximum over every run of every method on that task.
  The fallback is relative (0 = the worst run seen, 1 = the best), which is what a method
  comparison needs; it is not comparable across benches.
- Interquartile mean (IQM): the mean of the middle 50% of all runs pooled over tasks, cutting
  `floor(0.25 n)` runs from each end (scipy.stats.trim_mean(x, 0.25), as rliable).
- Mean and median: of the per-task mean scores (rliable's `aggregate_mean` and
  `aggregate_median`), so every task weighs the same even when some have fewer finished runs;
  the median is the median over tasks, not over pooled runs.
- Stratified bootstrap: resample runs with replacement *within each task* (the task mix is
  fixed, the seeds are the random part); 95% percentile intervals.
- Probability of improvement P(X > Y): per task the Mann-Whitney statistic
  `P(x > y) + 0.5 P(x = y)` over all run pairs, averaged over tasks; intervals by
  bootstrapping both methods' runs independently within each task.
- Performance profile: for each threshold tau, the fraction of runs with normalised score
  > tau, averaged over tasks.
- Average rank (not in rliable; the benchmark asks for it): methods ranked per (task, seed),
  1 = best, ties get the average rank. Because every method of a seed starts from the same
  population, this is a paired comparison.

Scores are "higher is better" throughout (returns).

`tests/test_bench_stats_rliable.py` checks every estimator against rliable 1.2.0 itself on the
same score matrices (point estimates exactly, bootstrap intervals within Monte-Carlo error).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

PerTask = Mapping[str, np.ndarray]  # task -> one score per run (seed)


# ---------------------------------------------------------------------------------------------
# point estimates
# ---------------------------------------------------------------------------------------------
def iqm(x: Sequence[float] | np.ndarray, axis: int | None = None) -> float | np.ndarray:
    """Interquartile mean: trim floor(25%) of the values from each end, average the rest."""
    a = np.asarray(x, dtype=float)
    if axis is None:
        a = a.ravel()
        axis = 0
    a = np.sort(a, axis=axis)
    n = a.shape[axis]
    k = int(0.25 * n)
    kept = np.take(a, np.arange(k, n - k), axis=axis)
    return kept.mean(axis=axis)


def normalize(
    results: pd.DataFrame,
    score: str = "final_best",
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Adds `norm` = per-task normalised `score` (see the module docstring)."""
    out = results.copy()
    ranges = dict(ranges or {})
    norm = np.full(len(out), np.nan)
    for task, idx in out.groupby("task").groups.items():
        x = out.loc[idx, score].to_numpy(dtype=float)
        if task in ranges:
            lo, hi = ranges[task]
        else:
            finite = x[np.isfinite(x)]
            lo, hi = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
        span = hi - lo
        pos = out.index.get_indexer(idx)
        # a task where every run scored the same carries no ranking information: all 0.5
        norm[pos] = (x - lo) / span if span > 0 else 0.5
    out["norm"] = norm
    return out


def per_task(df: pd.DataFrame, method: str, column: str = "norm") -> dict[str, np.ndarray]:
    sub = df[df["method"] == method]
    return {
        task: g.sort_values("seed")[column].to_numpy(dtype=float)
        for task, g in sub.groupby("task", sort=True)
    }


# ---------------------------------------------------------------------------------------------
# the stratified bootstrap
# ---------------------------------------------------------------------------------------------
def _resample(scores: PerTask, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, total runs): every task's runs resampled with replacement within the task."""
    parts = []
    for task in sorted(scores):
        x = np.asarray(scores[task], dtype=float)
        idx = rng.integers(0, len(x), size=(reps, len(x)))
        parts.append(x[idx])
    return np.concatenate(parts, axis=1)


def stratified_bootstrap_ci(
    scores: PerTask,
    statistic: Callable[[np.ndarray], np.ndarray] = lambda a: iqm(a, axis=1),
    reps: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """(point, low, high) of `statistic` over the runs pooled across tasks.

    `statistic` takes a (reps, runs) array and returns one value per row.
    """
    pooled = np.concatenate([np.asarray(scores[t], dtype=float) for t in sorted(scores)])
    point = float(statistic(pooled[None, :])[0])
    boot = statistic(_resample(scores, reps, np.random.default_rng(seed)))
    lo, hi = np.nanpercentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return point, float(lo), float(hi)


def task_means(pooled: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """(reps, runs) pooled in sorted task order, `sizes` runs per task -> (reps, tasks) of the
    per-task means."""
    cuts = np.cumsum(sizes)[:-1]
    return np.stack([p.mean(axis=1) for p in np.split(pooled, cuts, axis=1)], axis=1)


def aggregate(
    df: pd.DataFrame, reps: int = 2000, seed: int = 0, column: str = "norm"
) -> pd.DataFrame:
    """IQM, mean and median of the normalised scores per method, each with a 95% interval.

    IQM pools the runs of all tasks; mean and median are over the per-task means (rliable)."""
    rows = []
    for method in _methods(df):
        scores = per_task(df, method, column)
        sizes = [len(scores[t]) for t in sorted(scores)]
        stats = {
            "iqm": lambda a: iqm(a, axis=1),
            "mean": lambda a, s=sizes: task_means(a, s).mean(axis=1),
            "median": lambda a, s=sizes: np.median(task_means(a, s), axis=1),
        }
        row = {"method": method, "runs": int(sum(sizes))}
        for name, fn in stats.items():
            p, lo, hi = stratified_bootstrap_ci(scores, fn, reps=reps, seed=seed)
            row.update({name: p, f"{name}_lo": lo, f"{name}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def _methods(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["method"]))  # keep the suite's order


# ---------------------------------------------------------------------------------------------
# probability of improvement
# ---------------------------------------------------------------------------------------------
def _mann_whitney(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(x > y) + 0.5 P(x = y) over all pairs; x (..., n), y (..., m) -> (...)."""
    gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-1, -2))
    eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-1, -2))
    return gt + 0.5 * eq


def probability_of_improvement(x: PerTask, y: PerTask) -> float:
    """P(X > Y) averaged over the tasks both have (rliable's definition)."""
    tasks = sorted(set(x) & set(y))
    if not tasks:
        return math.nan
    return float(
        np.mean([_mann_whitney(np.asarray(x[t], float), np.asarray(y[t], float)) for t in tasks])
    )


def probability_of_improvement_ci(
    x: PerTask, y: PerTask, reps: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    tasks = sorted(set(x) & set(y))
    if not tasks:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    boot = np.zeros(reps)
    for t in tasks:
        a, b = np.asarray(x[t], float), np.asarray(y[t], float)
        ra = a[rng.integers(0, len(a), size=(reps, len(a)))]
        rb = b[rng.integers(0, len(b), size=(reps, len(b)))]
        boot += _mann_whitney(ra, rb)
    boot /= len(tasks)
    lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return probability_of_improvement(x, y), float(lo), float(hi)


def improvement_matrix(
    df: pd.DataFrame, reps: int = 2000, seed: int = 0, column: str = "norm"
) -> pd.DataFrame:
    """One row per ordered pair (x, y), x != y: P(x > y) with its 95% interval."""
    methods = _methods(df)
    scores = {m: per_task(df, m, column) for m in methods}
    rows = []
    for x in methods:
        for y in methods:
            if x == y:
                continue
            p, lo, hi = probability_of_improvement_ci(scores[x], scores[y], reps, seed)
            rows.append({"x": x, "y": y, "poi": p, "lo": lo, "hi": hi})
    return pd.DataFrame(rows, columns=["x", "y", "poi", "lo", "hi"])  # one method: no pairs


def verdict(lo: float, hi: float) -> str:
    """win / loss when the 95% interval of P(ref > other) excludes 0.5, else tie."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    if lo > 0.5:
        return "win"
    if hi < 0.5:
        return "loss"
    return "tie"


def win_tie_loss(
    df: pd.DataFrame, reference: str, reps: int = 2000, seed: int = 0, column: str = "norm"
) -> pd.DataFrame:
    """The reference method against every other, per task and over all tasks.

    Columns: task ("all tasks" for the aggregate), other, poi, lo, hi, verdict, and
    `seed_wins` "w/n": on how many seeds the reference beat the other outright (paired: the
    same seed is the same starting population for both).
    """
    rows = []
    ref = per_task(df, reference, column)
    for other in _methods(df):
        if other == reference:
            continue
        oth = per_task(df, other, column)
        tasks = [t for t in dict.fromkeys(df["task"]) if t in ref and t in oth]
        for t in tasks + ["all tasks"]:
            sel = tasks if t == "all tasks" else [t]
            p, lo, hi = probability_of_improvement_ci(
                {k: ref[k] for k in sel}, {k: oth[k] for k in sel}, reps, seed
            )
            sub = df[df["task"].isin(sel) & df["method"].isin([reference, other])]
            wide = sub.pivot_table(index=["task", "seed"], columns="method", values=column)
            wide = wide.dropna()
            wins = int((wide[reference] > wide[other]).sum()) if len(wide) else 0
            rows.append(
                {
                    "task": t,
                    "other": other,
                    "poi": p,
                    "lo": lo,
                    "hi": hi,
                    "verdict": verdict(lo, hi),
                    "seed_wins": f"{wins}/{len(wide)}",
                }
            )
    return pd.DataFrame(
        rows, columns=["task", "other", "poi", "lo", "hi", "verdict", "seed_wins"]
    )  # the reference alone: no rows, the same columns


# ---------------------------------------------------------------------------------------------
# ranks and profiles
# ---------------------------------------------------------------------------------------------
def average_rank(df: pd.DataFrame, column: str = "norm") -> pd.Series:
    """Mean rank per method over the (task, seed) groups where every method has a result."""
    methods = _methods(df)
    wide = df.pivot_table(index=["task", "seed"], columns="method", values=column)
    wide = wide.reindex(columns=methods).dropna()
    if not len(wide):
        return pd.Series(np.nan, index=methods)
    ranks = wide.rank(axis=1, ascending=False, method="average")
    return ranks.mean(axis=0).reindex(methods)


def performance_profile(
    df: pd.DataFrame,
    taus: np.ndarray | None = None,
    reps: int = 1000,
    seed: int = 0,
    column: str = "norm",
) -> pd.DataFrame:
    """Fraction of runs scoring above tau (averaged over tasks), with 95% bands."""
    if taus is None:
        taus = np.linspace(0.0, 1.0, 51)
    taus = np.asarray(taus, dtype=float)
    rows = []
    rng = np.random.default_rng(seed)
    for method in _methods(df):
        scores = per_task(df, method, column)
        point = np.mean([(np.asarray(v)[:, None] > taus).mean(axis=0) for v in scores.values()], 0)
        boot = np.zeros((reps, len(taus)))
        for t in sorted(scores):
            x = np.asarray(scores[t], float)
            r = x[rng.integers(0, len(x), size=(reps, len(x)))]
            boot += (r[:, :, None] > taus).mean(axis=1)
        boot /= len(scores)
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
        for i, tau in enumerate(taus):
            rows.append(
                {"method": method, "tau": tau, "fraction": point[i], "lo": lo[i], "hi": hi[i]}
            )
    return pd.DataFrame(rows)


def headline(
    results: pd.DataFrame,
    score: str = "final_best",
    ranges: Mapping[str, tuple[float, float]] | None = None,
    reps: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """The one table that answers "which method is better": aggregates plus average rank."""
    df = normalize(results, score, ranges)
    table = aggregate(df, reps=reps, seed=seed)
    table["mean_rank"] = table["method"].map(average_rank(df))
    return table


# ---------------------------------------------------------------------------------------------
# curves, diversity, overhead
# ---------------------------------------------------------------------------------------------
def mean_ci(x: np.ndarray, reps: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds with a 95% percentile-bootstrap interval (one stratum)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    if len(x) == 1:
        return float(x[0]), float(x[0]), float(x[0])
    r = x[np.random.default_rng(seed).integers(0, len(x), size=(reps, len(x)))].mean(axis=1)
    lo, hi = np.percentile(r, [2.5, 97.5])
    return float(x.mean()), float(lo), float(hi)


def bands(
    frame: pd.DataFrame, value: str, by: Sequence[str] = ("task", "method", "time"), reps=500
) -> pd.DataFrame:
    """Mean over seeds and its 95% bootstrap band, per (task, method, time)."""
    if not len(frame):
        return pd.DataFrame(columns=[*by, "mean", "lo", "hi", "seeds"])
    rows = []
    for key, g in frame.groupby(list(by), sort=True):
        m, lo, hi = mean_ci(g[value].to_numpy(), reps=reps)
        rows.append({**dict(zip(by, key, strict=True)), "mean": m, "lo": lo, "hi": hi,
                     "seeds": int(g["seed"].nunique())})  # fmt: skip
    return pd.DataFrame(rows)


def diversity_summary(diversity: pd.DataFrame) -> pd.DataFrame:
    """Per task and method: diversity at the start, the middle and the end, and its average
    over time (mean over seeds)."""
    if not len(diversity):
        return pd.DataFrame()
    rows = []
    for (task, method), g in diversity.groupby(["task", "method"], sort=False):
        times = np.sort(g["time"].unique())
        at = g.groupby("time")["diversity"].mean()
        per_seed = g.groupby("seed")["diversity"].mean()
        rows.append(
            {
                "task": task,
                "method": method,
                "start": float(at[times[0]]),
                "middle": float(at[times[len(times) // 2]]),
                "end": float(at[times[-1]]),
                "time_average": float(per_seed.mean()),
            }
        )
    return pd.DataFrame(rows)


def overhead(timings: pd.DataFrame) -> pd.DataFrame:
    """Per task and method: where the wall time went. `manage` is everything between two
    training calls (scores, scheduler, store writes, the exploit gather); `scheduler` is the
    decision alone."""
    if not len(timings):
        return pd.DataFrame()
    rows = []
    # per task: a toy's and a PPO task's timings have nothing in common
    for (task, method), g in timings.groupby(["task", "method"], sort=False):
        train, manage = g["train_s"].sum(), g["manage_s"].sum()
        # Medians over generations: the first generation of a cell that a worker runs first
        # includes compiling the programs (and the first exploit compiles the gather), which
        # would swamp sums and means.
        ratio = g["manage_s"] / (g["train_s"] + g["manage_s"]).where(lambda x: x > 0)
        rows.append(
            {
                "task": task,
                "method": method,
                "generations": len(g),
                "train_s": float(train),
                "manage_s": float(manage),
                "manage_fraction": float(ratio.median()) if ratio.notna().any() else 0.0,
                "manage_ms_median": 1e3 * float(g["manage_s"].median()),
                "scheduler_ms_median": 1e3 * float(g["scheduler_s"].median()),
                "scheduler_ms_p99": 1e3 * float(g["scheduler_s"].quantile(0.99)),
                "gather_ms_median": 1e3 * float(g.loc[g["exploits"] > 0, "gather_s"].median())
                if (g["exploits"] > 0).any()
                else 0.0,
                "exploits_per_generation": float(g["exploits"].mean()),
            }
        )
    return pd.DataFrame(rows)
