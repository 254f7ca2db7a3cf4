"""`gpbt report FOLDER`: plots and a summary of one experiment, from its store alone.

Writes into `FOLDER/report/`: `returns.png` (every member's score over time, exploits marked),
`hyperparameters.png` (each hyperparameter's schedule per member), `lineage.png` (the ancestry
of the final best member), `summary.md` and a self-contained `report.html` embedding them.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from gpbt.store import load


class ReportError(ValueError):
    pass


def _metric_column(reports: pd.DataFrame, metric: str) -> str:
    if metric == "score":
        return "score"
    for candidate in (metric, f"metric.{metric}"):
        if candidate in reports.columns:
            return candidate
    known = ["score"] + sorted(
        c.removeprefix("metric.") for c in reports.columns if c.startswith("metric.")
    )
    raise ReportError(
        f"metric {metric!r} is not in this experiment's reports; available: "
        f"{known} (use --metric NAME)"
    )


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # reports are written headless, never shown
    import matplotlib.pyplot as plt

    return plt


def plot_returns(reports, decisions, column, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5))
    for member, df in reports.groupby("member"):
        ax.plot(df["time"], df[column], lw=1.2, label=f"member {member}")
    if len(decisions):
        ex = decisions[decisions["kind"] == "exploit"]
        if len(ex):
            ax.scatter(
                ex["time"],
                ex["member_score"],
                marker="x",
                color="black",
                zorder=5,
                label="exploit (loser's score)",
            )
    ax.set_xlabel("time (" + ("env steps" if reports["time"].max() > 1000 else "steps") + ")")
    ax.set_ylabel(column)
    ax.set_title("score of every member; x = the member copied a winner")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_hyperparameters(reports, path: Path) -> list[str]:
    plt = _plt()
    cols = [c for c in reports.columns if c.startswith("config.")]
    if not cols:
        return []
    fig, axes = plt.subplots(len(cols), 1, figsize=(9, 2.2 * len(cols)), sharex=True, squeeze=False)
    for ax, col in zip(axes[:, 0], cols, strict=True):
        for member, df in reports.groupby("member"):
            values = pd.to_numeric(df[col], errors="coerce")
            if values.notna().any():
                ax.step(df["time"], values, where="post", lw=1.0, label=f"{member}")
            else:  # an unordered choice: plot its category index
                codes = pd.Categorical(df[col]).codes
                ax.step(df["time"], codes, where="post", lw=1.0)
        name = col.removeprefix("config.")
        ax.set_ylabel(name, fontsize=8)
        numeric = pd.to_numeric(reports[col], errors="coerce")
        if numeric.notna().all() and (numeric > 0).all() and numeric.max() / numeric.min() > 50:
            ax.set_yscale("log")
    axes[-1, 0].set_xlabel("time")
    axes[0, 0].set_title("hyperparameter schedule of every member")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [c.removeprefix("config.") for c in cols]


def plot_lineage(reports, column, hops, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    for _, df in reports.groupby("member"):
        ax.plot(df["time"], df[column], color="0.8", lw=0.8)
    # hops = [(t_end, m0), (t1, m1), (t2, m2), ...]: m0 (the best member) has held the line
    # since t1, when it copied m1; m1 since t2, and the oldest ancestor since the start.
    members = [m for _, m in hops]
    bounds = [t for t, _ in hops[1:]] + [reports["time"].min()]
    ends = [reports["time"].max()] + [t for t, _ in hops[1:]]
    for member, t_start, t_end in zip(members, bounds, ends, strict=True):
        df = reports[
            (reports["member"] == member)
            & (reports["time"] >= t_start)
            & (reports["time"] <= t_end)
        ]
        if len(df):
            ax.plot(
                df["time"], df[column], lw=2.2, label=f"member {member} ({t_start:g}-{t_end:g})"
            )
    ax.set_title(f"lineage of the final best member ({hops[0][1]})")
    ax.set_xlabel("time")
    ax.set_ylabel(column)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise(exp, column: str) -> tuple[str, dict]:
    reports, decisions = exp.reports, exp.decisions
    final_t = reports["time"].max()
    final = reports[reports["time"] == final_t].set_index("member")[column]
    final_eval = exp.state("final_evaluation")
    if final_eval is not None:
        scores = pd.Series(final_eval["returns"])
        basis = f"greedy evaluation, {final_eval['episodes']} episodes per member"
    else:
        scores, basis = final, f"last reported {column}"
    finite = scores.replace([np.inf, -np.inf], np.nan).dropna()
    mode = (exp.config or {}).get("mode", "max")
    best = int(finite.idxmax() if mode == "max" else finite.idxmin()) if len(finite) else 0
    n_exploits = int((decisions["kind"] == "exploit").sum()) if len(decisions) else 0
    config_cols = [c for c in reports.columns if c.startswith("config.")]
    best_cfg = reports[(reports["member"] == best) & (reports["time"] == final_t)][config_cols]
    best_cfg = (
        {c.removeprefix("config."): v for c, v in best_cfg.iloc[0].items()} if len(best_cfg) else {}
    )
    hops = exp.lineage(best)
    cfg = exp.config or {}
    facts = {
        "method": cfg.get("method"),
        "env": cfg.get("env") or cfg.get("trainable"),
        "population": int(reports["member"].nunique()),
        "final_time": float(final_t),
        "best_member": best,
        "best_score": float(scores[best]) if len(scores) else math.nan,
        "population_mean": float(finite.mean()) if len(finite) else math.nan,
        "exploits": n_exploits,
        "score_basis": basis,
        "best_config": best_cfg,
        "lineage": hops,
    }
    lines = [
        f"# Experiment report: {facts['method']} on {facts['env']}",
        "",
        f"- population {facts['population']}, trained to t = {final_t:g}",
        f"- final best member: **{best}**, score {facts['best_score']:.4g} ({basis})",
        f"- population mean: {facts['population_mean']:.4g}",
        f"- exploits: {n_exploits}",
        "- best member's hyperparameters at the end: "
        + ", ".join(f"{k}={_fmt(v)}" for k, v in best_cfg.items()),
        "- lineage of the best member (newest first): "
        + " <- ".join(f"{m}@{t:g}" for t, m in hops),
        "",
        "| member | final score |",
        "|---|---|",
    ]
    lines += [f"| {i} | {_fmt(v)} |" for i, v in scores.items()]
    return "\n".join(lines) + "\n", facts


def _fmt(v) -> str:
    if isinstance(v, float | np.floating):
        return f"{v:.4g}"
    return str(v)


def write_report(folder: str | Path, metric: str = "score") -> Path:
    folder = Path(folder)
    exp = load(folder)
    reports = exp.reports
    if len(reports) == 0:
        raise ReportError(f"{folder} has no reports yet; nothing to plot (did the run start?)")
    column = _metric_column(reports, metric)
    decisions = exp.decisions
    out = folder / "report"
    out.mkdir(exist_ok=True)
    plot_returns(reports, decisions, column, out / "returns.png")
    plot_hyperparameters(reports, out / "hyperparameters.png")
    text, facts = summarise(exp, column)
    plot_lineage(reports, column, facts["lineage"], out / "lineage.png")
    (out / "summary.md").write_text(text)
    images = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,'
        f'{base64.b64encode((out / name).read_bytes()).decode()}"><figcaption>{name}'
        "</figcaption></figure>"
        for name in ("returns.png", "hyperparameters.png", "lineage.png")
        if (out / name).exists()  # no hyperparameter plot when nothing is searched (default)
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>gpbt report</title>"
        "<style>body{font-family:sans-serif;max-width:960px;margin:auto}img{max-width:100%}"
        "</style></head><body><pre>" + html.escape(text) + "</pre>" + images + "</body></html>"
    )
    (out / "report.html").write_text(page)
    return out
