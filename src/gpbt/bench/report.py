"""`gpbt report BENCH_FOLDER` (or a results folder): the benchmark report.

Writes into `BENCH/report/`:
- `report.html`: one self-contained page (CSS inline, plots embedded as base64 PNG, no network)
  with the sections: summary, fairness audit, headline comparison, probability of improvement,
  per-task results and the win/tie/loss statement, performance profiles, learning curves,
  diversity, hyperparameter schedules, overhead, cells;
- the same plots as PNG files, and `report.md` with every table in Markdown.

The cell folders are re-collected first, so the report of a bench that is still running (or was
interrupted) shows what is finished and says what is missing. A results folder
(gpbt.bench.results) gives the same report from its JSON records alone, on any machine.
"""

from __future__ import annotations

import json
import math
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gpbt.analysis.ranges import at_edge
from gpbt.analysis.render import Block, figure_html, html_page
from gpbt.analysis.render import blocks_html as _blocks_html
from gpbt.analysis.render import blocks_md as _blocks_md
from gpbt.analysis.render import fmt as _fmt
from gpbt.bench import stats
from gpbt.bench.cell import cell_done
from gpbt.bench.results import ResultsFolder, is_results_folder, load_results
from gpbt.bench.runner import collect
from gpbt.bench.store import BenchStore, load_bench
from gpbt.bench.suite import SCORES, Suite
from gpbt.core.space import Float, Int, Space

SECTIONS = (
    ("summary", "Summary"),
    ("fairness", "Fairness audit"),
    ("headline", "Headline: aggregate scores"),
    ("improvement", "Probability of improvement"),
    ("per-task", "Per task: win / tie / loss"),
    ("profiles", "Performance profiles"),
    ("curves", "Learning curves"),
    ("diversity", "Population diversity"),
    ("schedules", "Hyperparameter schedules found"),
    ("overhead", "Overhead"),
    ("cells", "Cells"),
)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(methods: list[str]) -> dict[str, str]:
    cycle = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
        "#7f7f7f", "#bcbd22", "#17becf",
    ]  # fmt: skip
    return {m: cycle[i % len(cycle)] for i, m in enumerate(methods)}


def _grid(n: int, width: float = 4.2, height: float = 3.0):
    plt = _plt()
    cols = min(3, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def _suptitle(fig, text: str, fontsize: float) -> None:
    """A figure title wrapped to the figure's width.

    A one-task grid is one panel wide (4.2 in), narrower than the titles; unwrapped, the title
    runs off both edges of the saved PNG (`bbox_inches` is not "tight").
    """
    # An average glyph of the default sans-serif font is about 0.55 em wide.
    chars = max(20, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))
    fig.suptitle(textwrap.fill(text, chars), fontsize=fontsize)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------
# what each score of a run is, in the report's words (gpbt.core.selection says why)
SCORE_MEANING = {
    "final_test": "the member picked on a greedy selection evaluation, scored on fresh test "
    "episodes: unbiased",
    "final_best": "the best member's return on the episodes that picked it: a winner's curse "
    "that favours populations of independent members",
    "final_mean": "the population's mean greedy evaluation",
    "final_test_mean": "the population's mean return on the test episodes",
    "auc": "the area under the best-so-far training curve",
}


def plot_headline(table: pd.DataFrame, colors, score: str, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.5 * len(table) + 1.6), sharey=True)
    y = np.arange(len(table))[::-1]
    for ax, stat in zip(axes, ("iqm", "mean", "median"), strict=True):
        for yi, (_, r) in zip(y, table.iterrows(), strict=True):
            c = colors[r["method"]]
            ax.plot([r[f"{stat}_lo"], r[f"{stat}_hi"]], [yi, yi], color=c, lw=6, alpha=0.5)
            ax.plot([r[stat]], [yi], "|", color="black", ms=14)
        ax.set_title(stat.upper() if stat == "iqm" else stat)
        ax.set_xlabel(f"normalised {score}")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, table["method"])
    fig.suptitle("aggregate normalised score, 95% stratified-bootstrap intervals", fontsize=10)
    _save(fig, path)


def plot_improvement(matrix: pd.DataFrame, methods: list[str], path: Path) -> None:
    plt = _plt()
    n = len(methods)
    m = np.full((n, n), np.nan)
    for _, r in matrix.iterrows():
        m[methods.index(r["x"]), methods.index(r["y"])] = r["poi"]
    fig, ax = plt.subplots(figsize=(1.1 * n + 2.5, 0.9 * n + 1.5))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="RdBu")
    for i in range(n):
        for j in range(n):
            if i != j:
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(n), methods, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(n), methods, fontsize=8)
    ax.set_xlabel("Y")
    ax.set_ylabel("X")
    ax.set_title("P(X > Y): probability that a run of X beats a run of Y", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save(fig, path)


def plot_profiles(profile: pd.DataFrame, colors, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method, g in profile.groupby("method", sort=False):
        ax.plot(g["tau"], g["fraction"], color=colors[method], label=method)
        ax.fill_between(g["tau"], g["lo"], g["hi"], color=colors[method], alpha=0.15)
    ax.set_xlabel("normalised score tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_title("performance profiles (95% bands)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_bands(
    banded: pd.DataFrame, tasks: list[str], colors, ylabel: str, title: str, path: Path
) -> None:
    fig, axes = _grid(len(tasks))
    for ax, task in zip(axes, tasks, strict=False):
        sub = banded[banded["task"] == task]
        for method in colors:  # the suite's order of methods
            g = sub[sub["method"] == method].sort_values("time")
            if not len(g):
                continue
            ax.plot(g["time"], g["mean"], color=colors[method], label=method, lw=1.4)
            ax.fill_between(g["time"], g["lo"], g["hi"], color=colors[method], alpha=0.15)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("time (env steps per member)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    _suptitle(fig, title, fontsize=10)
    _save(fig, path)


def plot_schedules(
    schedules: pd.DataFrame, task: str, space: Space | None, colors, path: Path
) -> None:
    sub = schedules[schedules["task"] == task]
    params = list(dict.fromkeys(sub["param"]))
    fig, axes = _grid(len(params), width=4.0, height=2.6)
    for ax, param in zip(axes, params, strict=False):
        p = sub[sub["param"] == param]
        numeric = p["value"].notna().all()
        col = "value" if numeric else "unit"
        for method, g in p.groupby("method", sort=False):
            med = g.groupby("time")[col].median()
            q1 = g.groupby("time")[col].quantile(0.25)
            q3 = g.groupby("time")[col].quantile(0.75)
            # the config reported at t is the one that trained during the interval ending at t
            ax.step(med.index, med.values, where="pre", color=colors[method], label=method)
            ax.fill_between(
                med.index, q1.values, q3.values, step="pre", color=colors[method], alpha=0.12
            )
        spec = space.params.get(param) if space is not None else None
        if isinstance(spec, Float | Int) and spec.log and numeric:
            ax.set_yscale("log")
        ax.set_title(param + ("" if numeric else " (unit)"), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if params:
        axes[0].legend(fontsize=6)
    _suptitle(
        fig,
        f"{task}: hyperparameters along the final best member's lineage "
        "(median over seeds, band = quartiles)",
        fontsize=9,
    )
    _save(fig, path)


def plot_overhead(table: pd.DataFrame, colors, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.3 * len(table) + 1.8))
    y = np.arange(len(table))[::-1]
    c = [colors.get(m, "gray") for m in table["method"]]
    labels = [f"{t} | {m}" for t, m in zip(table["task"], table["method"], strict=True)]
    axes[0].barh(y, 100 * table["manage_fraction"], color=c)
    axes[0].set_yticks(y, labels, fontsize=7)
    axes[0].set_xlabel("% of a generation's wall time outside training (median)")
    axes[1].barh(y, table["scheduler_ms_median"], color=c)
    axes[1].set_yticks(y, labels, fontsize=7)
    axes[1].set_xlabel("scheduler decision per generation, median (ms)")
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------
def _interval(p, lo, hi) -> str:
    # A bootstrap over one seed (or seeds that all scored alike) resamples a single value:
    # [x, x] is no interval, and printing it as one claims a certainty that is not there.
    if lo == hi:
        return f"{_fmt(p)} (no interval)"
    return f"{_fmt(p)} [{_fmt(lo)}, {_fmt(hi)}]"


def per_task_table(results: pd.DataFrame, score: str) -> pd.DataFrame:
    """Raw score per task and method: mean over seeds [95% bootstrap interval]."""
    rows = []
    for (task, method), g in results.groupby(["task", "method"], sort=False):
        m, lo, hi = stats.mean_ci(g[score].to_numpy())
        pm, _, _ = stats.mean_ci(g["final_mean"].to_numpy())
        rows.append(
            {
                "task": task,
                "method": method,
                "seeds": len(g),
                f"{score} (mean [95% CI])": (
                    f"{_fmt(m)} (one seed: no interval)" if len(g) == 1 else _interval(m, lo, hi)
                ),
                "population mean": _fmt(pm),
                "auc (best so far)": _fmt(float(g["auc"].mean())),
                "exploits/run": _fmt(float(g["exploits"].mean())),
            }
        )
    return pd.DataFrame(rows)


def statement(wtl: pd.DataFrame, reference: str) -> list[str]:
    """The plain win / tie / loss sentences."""
    out = []
    for other, g in wtl.groupby("other", sort=False):
        per = g[g["task"] != "all tasks"]
        agg = g[g["task"] == "all tasks"].iloc[0]
        parts = []
        for v, verb in (("win", "wins"), ("tie", "ties"), ("loss", "loses")):
            tasks = per.loc[per["verdict"] == v, "task"].tolist()
            parts.append(f"{verb} on {len(tasks)} ({', '.join(tasks) if tasks else '-'})")
        out.append(
            f"{reference} vs {other}: " + "; ".join(parts) + f". Over all tasks "
            f"P({reference} > {other}) = {_interval(agg['poi'], agg['lo'], agg['hi'])}: "
            f"**{agg['verdict']}** (seed-by-seed wins {agg['seed_wins']})."
        )
    return out


def fairness_audit(results: pd.DataFrame) -> tuple[pd.DataFrame, str, set]:
    """For each (task, seed): did every method start from the same state, budget and code, and
    every equal row from the same hyperparameters?

    Returns the table, a sentence, and the (task, seed) groups that failed: those are left out
    of every comparison (a group whose cells ran different gpbt code, or started from different
    weights, compares code versions or luck, not methods). Reference rows (`default`, a `tune`
    subset such as the paper protocol) start from other hyperparameters on purpose; their
    weights, budget and code are still checked.
    """
    if not len(results):
        return pd.DataFrame(), "no finished cells yet", set()
    rows = []
    for (task, seed), g in results.groupby(["task", "seed"]):
        row_kind = g["row"] if "row" in g else pd.Series("equal", index=g.index)
        # rows that search the same names must start from the same draws: the equal rows, and
        # subset rows with the same tune list (pbt- and pb2-paper-protocol)
        tuned = g["tuned"] if "tuned" in g else pd.Series("", index=g.index)
        classes = g[row_kind != "default"].groupby(
            [row_kind[row_kind != "default"], tuned[row_kind != "default"]]
        )
        code = g["code_hash"].fillna("") if "code_hash" in g else pd.Series("", index=g.index)
        commits = g["commit"].fillna("") if "commit" in g else pd.Series("", index=g.index)
        rows.append(
            {
                "task": task,
                "seed": seed,
                "methods": len(g),
                "same hyperparameters": all(
                    c["initial_configs_hash"].nunique() <= 1 for _, c in classes
                ),
                "differ on purpose": ", ".join(g.loc[row_kind != "equal", "method"]) or "-",
                "same weights+env state": g["initial_state_hash"].nunique() == 1,
                "same budget+interval": g[["total_steps", "perturbation_interval", "population"]]
                .drop_duplicates()
                .shape[0]
                == 1,
                # cells recorded before the code hash existed say "n/a"
                "same code": "n/a" if (code == "").all() else bool(code.nunique() == 1),
                "commits": ", ".join(sorted(set(commits) - {""})) or "?",
            }
        )
    table = pd.DataFrame(rows)
    checks = ["same hyperparameters", "same weights+env state", "same budget+interval"]
    known = table["same code"] != "n/a"
    code_ok = table["same code"].map(lambda v: v is True or v == "n/a")
    good = table[checks].all(axis=1) & code_ok
    ok = int(good.sum())
    text = (
        f"{ok}/{len(table)} (task, seed) groups: every method started from an identical initial "
        "state (weights, optimiser, environment states and keys, compared by hash) with the "
        "same budget, interval and population, and every row from the same initial "
        "hyperparameters as the rows that search the same names"
        + (", and all ran the same gpbt code." if known.all() else
           f"; the same gpbt code in {int(known.sum())} groups (older cells did not record it).")
    )  # fmt: skip
    bad = {(r.task, r.seed) for r, g in zip(table.itertuples(), good, strict=True) if not g}
    if bad:
        text = (
            f"UNFAIR GROUPS FOUND: {len(bad)} (task, seed) groups are left out of every "
            "comparison below (a group whose cells ran different code or started apart "
            "compares versions, not methods; rerun its cells at one commit). " + text
        )
    return table, text, bad


def _without(frame: pd.DataFrame, groups: set) -> pd.DataFrame:
    """`frame` without the rows of the given (task, seed) groups."""
    if not groups or not len(frame):
        return frame
    keep = [(t, s) not in groups for t, s in zip(frame["task"], frame["seed"], strict=True)]
    return frame[keep].reset_index(drop=True)


REFERENCE_ROW_LABELS = {
    "default": "untuned (agent defaults)",
    "subset": "searches a part",
    "anchored": "searches all, anchored start",
}


def reference_rows(results: pd.DataFrame, suite: Suite) -> pd.DataFrame:
    """What each row that differs on purpose searched, and the values it trained with untuned
    (an anchored row: the values its first members started at)."""
    if "row" not in results:
        return pd.DataFrame()
    notes = {m["name"]: m.get("note", "") for m in suite.methods}
    rows = []
    for (method, task), g in results[results["row"] != "equal"].groupby(
        ["method", "task"], sort=False
    ):
        r = g.iloc[0]
        space = _task_space(suite, task)
        tuned = [x for x in str(r["tuned"]).split(",") if x]
        effective = json.loads(r.get("initial_effective") or "{}")
        names = list(space.names) if space is not None else sorted(effective)
        fixed = ", ".join(
            f"{n}={_fmt(effective[n])}" for n in names if n not in tuned and n in effective
        )
        if r["row"] == "anchored":
            fixed = "; ".join(
                f"member {i} starts at " + ", ".join(f"{n}={_fmt(v)}" for n, v in p.items())
                for i, p in enumerate(json.loads(r.get("start_points") or "[]"))
            )
        rows.append(
            {
                "method": method,
                "task": task,
                "row": REFERENCE_ROW_LABELS[r["row"]],
                "searches": ", ".join(tuned) or "nothing",
                "untuned values or start points": fixed or "-",
                "note": notes.get(method, ""),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------
def range_edges(results: pd.DataFrame, suite: Suite) -> pd.DataFrame:
    """Per task and method, for each tuned hyperparameter: in how many runs the final best
    member ended at the low or high edge of its range (gpbt.analysis.ranges decides "at").
    A method that keeps ending on one edge is pressing against the range, not choosing inside
    it: the range, not the method, may be what limits the score."""
    rows = []
    for (task, method), runs in results.groupby(["task", "method"], sort=False):
        space = _task_space(suite, task)
        tuned = [t for t in str(runs["tuned"].iloc[0]).split(",") if t]
        if space is None or not tuned:
            continue  # nothing searched (the default row)
        configs = [space.flat(json.loads(c)) for c in runs["best_config"]]
        row: dict[str, object] = {"task": task, "method": method, "runs": len(configs)}
        for name in space.names:
            if name not in tuned:
                row[name] = "untuned"
                continue
            sides = [at_edge(space.params[name], c.get(name)) for c in configs]
            low, high = sides.count("low"), sides.count("high")
            row[name] = (
                " ".join([f"low {low}" if low else "", f"high {high}" if high else ""]).strip()
                or "-"
            )
        rows.append(row)
    return pd.DataFrame(rows)


def write_bench_report(folder: str | Path, reps: int = 2000, out: str | Path | None = None) -> Path:
    """The report of a bench folder, or of a results folder alone (gpbt.bench.results), into
    `out` (default `FOLDER/report`)."""
    folder = Path(folder)
    if is_results_folder(folder):
        bench = load_results(folder)
        suite = Suite.from_dict(bench.suite)
    else:
        bench = load_bench(folder)
        if not bench.suite:
            raise ValueError(f"{folder}: the bench store has no suite; was it made by gpbt bench?")
        suite = Suite.from_dict(bench.suite)
        linked = bench.meta.get("results")
        res = ResultsFolder(linked, suite) if linked and Path(linked).is_dir() else None
        frames = collect(folder, suite, res, bench.cells)
        with BenchStore(folder) as store:
            store.prune({c.key for c in suite.cells()})
            # The cell folders are the truth: a bench stopped by Ctrl-C or a kill may have
            # finished cells its worker had not reported yet, and the tables hold them.
            status = {(r.task, r.method, r.seed): r.status for r in store.cells().itertuples()}
            for c in suite.cells():
                if status.get(c.key) != "done" and cell_done(folder / c.relpath):
                    store.set_status(c.key, "done")
            store.write_tables(frames)
        bench = load_bench(folder)
    out = Path(out) if out is not None else folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    return render_report(bench, suite, out, reps)


def render_report(bench, suite: Suite, out: Path, reps: int = 2000) -> Path:
    """Every table and plot of the report from a `Bench` (a bench or a results folder)."""
    results = bench.results
    if len(results):
        results.to_csv(out / "results.csv", index=False)
    methods = suite.method_names()
    tasks = [t for t in suite.task_names() if len(results) and t in set(results["task"])]
    colors = _colors(methods)
    score = suite.score
    figures: dict[str, list[tuple[str, str]]] = {k: [] for k, _ in SECTIONS}
    sections: dict[str, list[Block]] = {}

    n_cells = len(bench.cells)
    status = bench.cells["status"].value_counts().to_dict() if n_cells else {}
    missing = n_cells - status.get("done", 0)
    not_done = ", ".join(f"{k} {v}" for k, v in status.items() if k != "done")
    meta = bench.meta
    summary_lines = [
        f"Suite **{suite.label}** ({suite.path}): {suite.description}",
        f"{len(suite.tasks)} tasks x {len(methods)} methods x {len(suite.seeds)} seeds = "
        f"{n_cells} cells; done {status.get('done', 0)}"
        + (f", NOT done {missing} ({not_done})" if missing else ""),  # fmt: skip
        f"Score of a run: `{score}` ({SCORE_MEANING[score]}); normalised per task (min-max "
        "over the runs unless the suite gives a score_range). Reference method: "
        + suite.reference
        + ".",
        f"Machine: {meta.get('machine', {}).get('platform', '?')}, "
        f"{meta.get('machine', {}).get('cpus', '?')} CPUs; commit {meta.get('commit') or '?'}; "
        f"bench started {meta.get('created', '?')}; report written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}.",
    ]
    runs = meta.get("invocations") or []
    if len(runs) > 1:
        summary_lines.append(
            "Invocations of gpbt bench on this folder: "
            + "; ".join(f"{r['at']} at commit {r['commit'] or '?'}" for r in runs)
        )
    if suite.notes:
        summary_lines.append(suite.notes)
    if is_results_folder(bench.folder):
        summary_lines.append(
            f"Rebuilt from the results folder {bench.folder} alone ({int(status.get('done', 0))} "
            "cell records)"
            + (
                f"; {meta['ignored_records']} records of cells the suite no longer has were "
                "left out"
                if meta.get("ignored_records")
                else ""
            )  # fmt: skip
            + "."
        )

    if not len(results):
        sections["summary"] = [("bullets", summary_lines), ("text", "No finished cells yet.")]
        return _write(out, suite, sections, figures)

    audit, audit_text, unfair = fairness_audit(results)
    if unfair:
        results = _without(results, unfair)
        summary_lines.append(
            f"**{len(unfair)} (task, seed) groups failed the fairness audit and are left out of "
            "every comparison** (see Fairness audit)."
        )
    if not len(results):
        sections["summary"] = [("bullets", summary_lines)]
        sections["fairness"] = [("text", audit_text), ("table", audit)]
        return _write(out, suite, sections, figures)
    if results.groupby(["task", "method"]).size().max() == 1:
        summary_lines.append(
            "One seed per task and method: the tables show no 95% intervals (a bootstrap over "
            "one run has no spread); run more seeds (--seeds N) for them."
        )
    df = stats.normalize(results, score, suite.score_ranges())
    head = stats.aggregate(df, reps=reps)
    head["mean_rank"] = head["method"].map(stats.average_rank(df))
    head_view = pd.DataFrame(
        {
            "method": head["method"],
            "runs": head["runs"],
            "IQM [95% CI]": [_interval(r.iqm, r.iqm_lo, r.iqm_hi) for r in head.itertuples()],
            "mean [95% CI]": [_interval(r.mean, r.mean_lo, r.mean_hi) for r in head.itertuples()],
            "median [95% CI]": [
                _interval(r.median, r.median_lo, r.median_hi) for r in head.itertuples()
            ],
            "average rank": head["mean_rank"],
        }
    )
    # The other two scores of a run, so a tie on one is not mistaken for a tie on all: the
    # population's mean (how good the whole population got) and the area under the
    # best-so-far curve (how fast).
    others = []
    # (a score no cell has, such as final_test in records from before it existed, is left out)
    for other in [x for x in SCORES if x != score and x in results and results[x].notna().any()]:
        d = stats.normalize(results, other, suite.score_ranges() if other != "auc" else None)
        agg = stats.aggregate(d, reps=reps).set_index("method")
        rank = stats.average_rank(d)
        for m in agg.index:
            r = agg.loc[m]
            others.append({"score": other, "method": m,
                           "IQM [95% CI]": _interval(r["iqm"], r["iqm_lo"], r["iqm_hi"]),
                           "average rank": rank.get(m)})  # fmt: skip
    others_view = pd.DataFrame(others)
    plot_headline(head, colors, score, out / "headline.png")
    figures["headline"].append(("headline.png", "IQM, mean and median of normalised scores"))

    matrix = stats.improvement_matrix(df, reps=reps)
    present = [m for m in methods if m in set(df["method"])]
    plot_improvement(matrix, present, out / "improvement.png")
    figures["improvement"].append(("improvement.png", "probability of improvement matrix"))
    poi_view = matrix[matrix["x"] == suite.reference].copy()
    poi_view = pd.DataFrame(
        {
            "X": poi_view["x"],
            "Y": poi_view["y"],
            "P(X > Y) [95% CI]": [_interval(r.poi, r.lo, r.hi) for r in poi_view.itertuples()],
            "verdict": [stats.verdict(r.lo, r.hi) for r in poi_view.itertuples()],
        }
    )

    wtl = stats.win_tie_loss(df, suite.reference, reps=reps)
    sentences = statement(wtl, suite.reference) if len(wtl) else []
    wtl_view = wtl.assign(
        **{"P(ref > other) [95% CI]": [_interval(r.poi, r.lo, r.hi) for r in wtl.itertuples()]}
    )[["task", "other", "P(ref > other) [95% CI]", "verdict", "seed_wins"]]
    task_view = per_task_table(results, score)

    profile = stats.performance_profile(df, reps=min(reps, 1000))
    plot_profiles(profile, colors, out / "profiles.png")
    figures["profiles"].append(("profiles.png", "performance profiles"))

    curves = _without(bench.curves, unfair)
    if len(curves):
        best = stats.bands(curves, "best")
        plot_bands(best, tasks, colors, "best member's training return",
                   "best member's training return over time (mean over seeds, 95% band)",
                   out / "curves.png")  # fmt: skip
        figures["curves"].append(("curves.png", "learning curves, best member"))
        mean = stats.bands(curves, "mean")
        plot_bands(mean, tasks, colors, "population mean training return",
                   "population mean training return (mean over seeds, 95% band)",
                   out / "curves_mean.png")  # fmt: skip
        figures["curves"].append(("curves_mean.png", "learning curves, population mean"))

    div = _without(bench.diversity, unfair)
    div_view = stats.diversity_summary(div)
    if len(div):
        plot_bands(stats.bands(div, "diversity"), tasks, colors,
                   "mean pairwise distance (unit space)",
                   "population diversity over time (mean over seeds, 95% band)",
                   out / "diversity.png")  # fmt: skip
        figures["diversity"].append(("diversity.png", "diversity over time"))

    sch = _without(bench.schedules, unfair)
    if len(sch):
        for i, task in enumerate(tasks):
            cfg = _task_space(suite, task)
            name = f"schedules_{i}.png"
            plot_schedules(sch, task, cfg, colors, out / name)
            figures["schedules"].append((name, f"schedules on {task}"))

    over = stats.overhead(_without(bench.timings, unfair))
    if len(over):
        plot_overhead(over, colors, out / "overhead.png")
        figures["overhead"].append(("overhead.png", "overhead"))

    cells_view = bench.cells[["task", "method", "seed", "status", "attempts", "wall_s", "error"]]

    sections["summary"] = [("bullets", summary_lines)]
    sections["fairness"] = [("text", audit_text), ("table", audit)]
    refs = reference_rows(results, suite)
    if len(refs):
        sections["fairness"] += [
            (
                "text",
                "Rows that differ from the others' hyperparameters on purpose, labelled: "
                "`default` trains the agent's default hyperparameters untuned; a row that "
                "searches a part of the space (the paper protocol: the released PBT and PB2 "
                "scripts tuned four of GPBT-PL's seven PPO hyperparameters) trains the rest "
                "at the agent's defaults. Their weights, budget and code are audited as above.",
            ),
            ("table", refs),
        ]
    sections["headline"] = [
        ("table", head_view),
        ("text", "The other scores of a run (normalised the same way; auc min-max per task):"),
        ("table", others_view),
    ]
    sections["improvement"] = [
        (
            "text",
            f"P({suite.reference} > Y), 95% stratified-bootstrap intervals; win/loss when the "
            "interval excludes 0.5.",
        ),
        ("table", poi_view),
    ]
    sections["per-task"] = [("bullets", sentences), ("table", task_view), ("table", wtl_view)]
    sections["diversity"] = [
        (
            "text",
            "Mean pairwise Euclidean distance between the members' hyperparameters in the unit "
            "cube of the search space, at each decision time (the configs that trained up to "
            "it).",
        ),
        ("table", div_view),
    ]
    sections["overhead"] = [
        (
            "text",
            "Wall time outside the training calls (scores, scheduler, exploit gather, store "
            "writes): totals over the cells, medians over generations (a worker's first cell of "
            "a program includes compilation); the scheduler columns are the decision alone.",
        ),
        ("table", over),
    ]
    sections["cells"] = [("table", cells_view)]
    sections["profiles"] = [
        (
            "text",
            "Fraction of runs whose normalised score exceeds each threshold (higher curve is "
            "better), averaged over tasks.",
        )
    ]
    sections["curves"] = [("text", "Training scores reported at each decision time.")]
    sections["schedules"] = [
        (
            "text",
            "For each run, the hyperparameters that the final best member's line of weights "
            "actually trained with, following its exploits back in time.",
        )
    ]
    edges = range_edges(results, suite)
    if len(edges):
        sections["schedules"] += [
            (
                "text",
                "Range edges: in how many runs the final best member ended at the low or high "
                "edge of each tuned hyperparameter's range (a float within 2% of it in the unit "
                "cube, an integer on it; - none). A method that keeps ending on one edge is "
                "limited by the range, which no method can leave; the random row shows how "
                "often an edge comes by chance.",
            ),
            ("table", edges),
        ]
    return _write(out, suite, sections, figures)


def _task_space(suite: Suite, task: str) -> Space | None:
    for t in suite.tasks:
        if t["name"] == task:
            if "toy" in t:
                from gpbt.engines.toys import TOYS

                return TOYS[t["toy"]](**(t.get("toy_options") or {})).space
            spec = t.get("space") or suite.raw.get("config", {}).get("space")
            return Space.from_dict(spec) if spec else None
    return None


def _write(out: Path, suite: Suite, sections: dict[str, list[Block]], figures: dict) -> Path:
    lines = [f"# Benchmark report: {suite.label}", ""]
    for key, title in SECTIONS:
        if key not in sections and not figures.get(key):
            continue
        lines += [f"## {title}", ""]
        if key in sections:
            lines += [_blocks_md(sections[key]), ""]
        for name, caption in figures.get(key, []):
            lines += [f"![{caption}]({name})", ""]
    (out / "report.md").write_text("\n".join(lines))
    body = []
    for key, title in SECTIONS:
        inner = _blocks_html(sections[key]) if key in sections else "<p><em>no data yet</em></p>"
        inner += "".join(figure_html(out / name, caption) for name, caption in figures.get(key, []))
        body.append((key, title, inner))
    page = html_page(f"gpbt bench report: {suite.label}", body)
    (out / "report.html").write_text(page)
    return out
