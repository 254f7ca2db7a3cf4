"""`gpbt report FOLDER`: one experiment's report, from its store alone.

Writes into `FOLDER/report/`: `returns.png` (every member's score over time, exploits marked),
`hyperparameters.png` (each hyperparameter's schedule per member, the best lineage's in black,
on a log axis where the search space is log), `lineage.png` (the ancestry of the final best
member), `episode.gif` (vector-engine runs, Brax excepted: the best member's greedy episode),
and the same sections twice: `summary.md` and `report.html`, one self-contained page
(rendered headings and tables, figures embedded as base64, no network). A hyperparameter the
best member ended against an edge of its range is named in the summary and under the schedule
(gpbt.analysis.ranges).

The plots and the animation are optional parts: one that fails (a drawing error, a missing
checkpoint) is one warning line (`gpbt: warning: ...` on stderr) and a sentence in its section,
and the rest of the report is written, so a finished run is never lost to its report.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from gpbt.analysis.lineage import (
    ExperimentError,
    best_member,
    best_schedule,
    experiment_space,
    plain_time,
    require_reports,
)
from gpbt.analysis.ranges import experiment_edge_hits
from gpbt.analysis.render import Block, blocks_html, blocks_md, figure_html, fmt, html_page
from gpbt.core.space import Choice, Float, Int, Space
from gpbt.engines import engine_of
from gpbt.store import load

SECTIONS = (
    ("summary", "Summary"),
    ("scores", "Scores"),
    ("hyperparameters", "Hyperparameters"),
    ("lineage", "Lineage of the best member"),
    ("decisions", "Decision log"),
    ("episode", "The best member playing"),
)
MAX_DECISION_ROWS = 300  # the page stays readable; the store holds them all


class ReportError(ExperimentError):
    pass


Warn = Callable[[str], None]
REST_WRITTEN = "the rest of the report is written"


def warn_on_stderr(message: str) -> None:
    print(f"gpbt: warning: {message}", file=sys.stderr, flush=True)


def describe_failure(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def _raise_if_disk_fault(err: Exception) -> None:
    """A full or read-only disk is no optional part's failure: nothing else can be written
    either, so it ends the report at once in the store's one line (gpbt.store.faults)."""
    from gpbt.store.faults import storage_fault

    if storage_fault(err, ".", "writing the report") is not None:
        raise err


def _optional(what: str, draw: Callable[[], object], warn: Warn) -> str | None:
    """Draw one optional part of the report; a failure is one warning line, not a lost report.
    Returns why it failed, or None."""
    try:
        draw()
    except Exception as err:  # noqa: BLE001 - whatever broke, the rest of the report is written
        _raise_if_disk_fault(err)
        reason = describe_failure(err)
        warn(f"report: {what} not drawn ({reason}); {REST_WRITTEN}")
        return reason
    return None


def _metric_column(reports: pd.DataFrame, metric: str) -> str:
    if metric == "score":
        return "score"
    for candidate in (metric, f"metric.{metric}"):
        if candidate in reports.columns:
            return candidate
    # a metric named "score" is the score itself: list it once
    known = ["score"] + sorted(
        {c.removeprefix("metric.") for c in reports.columns if c.startswith("metric.")} - {"score"}
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


def _exploits(decisions: pd.DataFrame) -> pd.DataFrame:
    """Exploits that copied another member (a member copying itself is a scheduled change)."""
    if not len(decisions):
        return decisions
    copied = (decisions["kind"] == "exploit") & (
        decisions["donor"].fillna(-1) != decisions["member"]
    )
    return decisions[copied]


def plot_returns(reports, decisions, column, path: Path, final=None) -> None:
    """Every member's reported `column` over time, exploits marked; `final` (a `Best` whose
    basis is a final greedy evaluation) adds each member's final score at the end of its curve,
    the score the summary gives, the chosen member's larger."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5))
    end = reports["time"].max()
    for member, df in reports.groupby("member"):
        (line,) = ax.plot(df["time"], df[column], lw=1.2, label=f"member {member}")
        if final is not None and member in final.scores.index:
            chosen = member == final.member
            ax.scatter([end], [final.scores[member]], marker="*", s=160 if chosen else 60,
                       color=line.get_color(), edgecolor="black", linewidth=0.8 if chosen else 0,
                       zorder=7 if chosen else 6)  # fmt: skip
    if final is not None:
        ax.scatter([], [], marker="*", s=60, color="0.5", label=f"final: {final.basis}")
    ex = _exploits(decisions)
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
    title = "score of every member; x = the member copied a winner"
    if final is not None:
        title += f"; * = final score (large: member {final.member})"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_hyperparameters(
    reports, space: Space | None, entries: list[dict], path: Path
) -> dict[str, str]:
    """One panel per hyperparameter: every member's schedule (thin) and the best lineage's
    (black); the y axis is logarithmic where the search space samples on a log scale.
    Returns each hyperparameter's axis: "log", "linear" or "categories"."""
    plt = _plt()
    cols = [c for c in reports.columns if c.startswith("config.")]
    axis: dict[str, str] = {}
    if not cols:
        return axis
    fig, axes = plt.subplots(len(cols), 1, figsize=(9, 2.2 * len(cols)), sharex=True, squeeze=False)
    for ax, col in zip(axes[:, 0], cols, strict=True):
        name = col.removeprefix("config.").replace("/", ".")
        param = space.params.get(name) if space is not None else None
        categories = None
        if isinstance(param, Choice) and not param.ordered:
            categories = list(param.values)
        elif pd.to_numeric(reports[col], errors="coerce").isna().any():
            categories = list(dict.fromkeys(reports[col].dropna()))

        def y(values, categories=categories):
            if categories is None:
                return pd.to_numeric(pd.Series(list(values)), errors="coerce").to_numpy()
            return np.array([categories.index(v) if v in categories else np.nan for v in values])

        # the config reported at t trained the interval ending at t: a step drawn "pre",
        # from time 0 (the first interval's start)
        for member, df in reports.groupby("member"):
            values = y(df[col])
            ax.step([0, *df["time"]], [values[0], *values], where="pre", lw=1.0, alpha=0.6,
                    label=f"{member}")  # fmt: skip
        if entries:
            values = y(e["config"].get(name) for e in entries)
            ax.step(
                [entries[0]["time"], *(e["end"] for e in entries)],
                [values[0], *values],
                where="pre",
                color="black",
                lw=2.2,
                label="best lineage",
            )
        axis[name] = "linear"
        if categories is not None:
            ax.set_yticks(range(len(categories)), [str(c) for c in categories], fontsize=7)
            axis[name] = "categories"
        elif isinstance(param, Float | Int) and param.log:
            ax.set_yscale("log")
            axis[name] = "log"
        ax.set_ylabel(name + (" (log)" if getattr(param, "log", False) else ""), fontsize=8)
    axes[-1, 0].set_xlabel("time")
    axes[0, 0].set_title("hyperparameters of every member; black: the best member's lineage")
    axes[0, 0].legend(fontsize=6, ncol=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return axis


def plot_lineage(reports, column, entries: list[dict], best: int, path: Path) -> None:
    """The score of the best member's line of weights: each interval's point is the report
    of the member holding the weights then (grey: every member's own curve)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    for _, df in reports.groupby("member"):
        ax.plot(df["time"], df[column], color="0.8", lw=0.8)
    indexed = reports.set_index(["member", "time"])[column]
    ends = [e["end"] for e in entries]
    values = [indexed.get((e["member"], e["end"]), np.nan) for e in entries]
    ax.plot(ends, values, color="black", lw=1.5, zorder=3)
    for member in dict.fromkeys(e["member"] for e in entries):
        mine = [i for i, e in enumerate(entries) if e["member"] == member]
        ax.scatter([ends[i] for i in mine], [values[i] for i in mine], s=36, zorder=4,
                   label=f"held by member {member}")  # fmt: skip
    ax.set_title(f"lineage of the final best member ({best}); grey: every member")
    ax.set_xlabel("time")
    ax.set_ylabel(column)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------ sections
def _scores_table(exp, best, column: str) -> pd.DataFrame:
    reports, decisions = exp.reports, _exploits(exp.decisions)
    last = reports.sort_values("time").groupby("member").last()
    return pd.DataFrame(
        {
            "member": best.scores.index,
            f"final score ({best.basis})": best.scores.to_numpy(),
            f"last {column}": [last[column].get(m, math.nan) for m in best.scores.index],
            "copied a winner": [int((decisions["member"] == m).sum()) for m in best.scores.index],
            "was copied": [int((decisions["donor"] == m).sum()) for m in best.scores.index],
        }
    )


def _schedule_table(entries: list[dict]) -> pd.DataFrame:
    rows = []
    for e in entries:
        row = {"from": e["time"], "to": e["end"], "trained by member": e["member"]}
        row.update(e["config"])
        row["score at the end"] = math.nan if e["score"] is None else e["score"]
        rows.append(row)
    return pd.DataFrame(rows)


def _decision_table(decisions: pd.DataFrame) -> pd.DataFrame:
    changes = decisions[decisions["kind"] == "exploit"].head(MAX_DECISION_ROWS)
    names = [c.removeprefix("new_config.") for c in decisions.columns if "new_config." in c]
    rows = []
    for _, d in changes.iterrows():
        own = d["donor"] == d["member"]
        row = {
            "time": plain_time(d["time"]),
            "member": d["member"],
            "copied": "itself (scheduled change)" if own else d["donor"],
            "its score": d["member_score"],
            "winner's score": math.nan if own else d["partner_score"],
        }
        for n in names:
            old, new = d.get(f"old_config.{n}"), d.get(f"new_config.{n}")
            if _missing(old) and _missing(new):
                row[n] = "-"  # not a hyperparameter of this decision
            elif old == new:
                # a perturbation can land where it started (a clipped or snapped value): say so
                row[n] = f"{fmt(new)} (unchanged)"
            else:
                row[n] = f"{fmt(old)} -> {fmt(new)}"
        rows.append(row)
    return pd.DataFrame(rows)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _episode(exp, out: Path, warn: Warn) -> tuple[list[Block], list[tuple[str, str]]]:
    """The best member's greedy episode as a GIF, or a sentence saying why there is none."""
    cfg = exp.config or {}
    engine = engine_of(cfg)
    if engine is None or not engine.supports("animate"):
        return [
            (
                "text",
                f"No animation: the {cfg.get('engine')!r} engine trains your own trainables, "
                "which gpbt cannot draw; `gpbt export` gives you the best member's checkpoint.",
            )
        ], []
    from gpbt.rl.animate import can_animate, write_gif
    from gpbt.rl.envs import resolve_env_name

    env = cfg.get("env", "")
    try:
        name = resolve_env_name(env)[0]
    except ValueError:
        name = None  # a user's env = "module:function": drawn from the env the member builds
    if name is not None and not can_animate(name):
        return [("text", f"No animation: gpbt does not draw Brax ({env}).")], []
    from gpbt.analysis.export import run_member

    best = best_member(exp)
    try:
        member = run_member(exp, best.member)
    except ExperimentError as err:  # no checkpoint: the report says so, and so does the CLI
        warn(f"report: no animation ({err})")
        return [("text", f"No animation: {err}")], []
    episode = write_gif(member, out / "episode.gif", seed=0)
    how = "finished" if episode.finished else "cut at 1000 steps"
    text = (
        f"Member {best.member} (weights at t = {member.meta['time']:g}) playing one greedy "
        f"episode of {env}: {len(episode.rewards)} steps, return {episode.total:.4g} ({how}; "
        "environment seed 0)."
    )
    return [("text", text)], [("episode.gif", f"member {best.member}'s greedy episode")]


def write_report(
    folder: str | Path, metric: str = "score", animate: bool = True, warn: Warn = warn_on_stderr
) -> Path:
    """Write the report into FOLDER/report; returns that folder. Bad input (no reports, an
    unknown metric) raises ReportError; a failing plot or animation is reported to `warn`
    (one line) and the rest is written."""
    folder = Path(folder)
    exp = load(folder)
    try:
        require_reports(exp)
    except ExperimentError as err:
        raise ReportError(str(err)) from None
    reports, decisions = exp.reports, exp.decisions
    column = _metric_column(reports, metric)
    out = folder / "report"
    out.mkdir(exist_ok=True)
    cfg = exp.config or {}
    space = experiment_space(exp)
    best = best_member(exp, column)
    doc = best_schedule(exp)
    entries, held = doc["entries"], doc["lineage"]
    # the final greedy evaluation is what the summary reports: shown on the score plot
    final = best if exp.state("final_evaluation") is not None else None
    failed = {
        "scores": _optional(
            "the score plot",
            lambda: plot_returns(reports, decisions, column, out / "returns.png", final),
            warn,
        ),
        "hyperparameters": _optional(
            "the hyperparameter plot",
            lambda: plot_hyperparameters(reports, space, entries, out / "hyperparameters.png"),
            warn,
        ),
        "lineage": _optional(
            "the lineage plot",
            lambda: plot_lineage(reports, column, entries, best.member, out / "lineage.png"),
            warn,
        ),
    }

    exploits = _exploits(decisions)
    scheduled = int((decisions["kind"] == "exploit").sum()) - len(exploits) if len(decisions) else 0
    method = cfg.get("method") or (cfg.get("scheduler") or {}).get("method")
    env = cfg.get("env") or cfg.get("trainable")
    finite = best.scores.replace([np.inf, -np.inf], np.nan).dropna()
    final_config = entries[-1]["config"] if entries else {}
    summary = [
        f"engine `{cfg.get('engine')}`, method `{method}`, population "
        f"{reports['member'].nunique()}, trained to t = {reports['time'].max():g}",
        f"final best member: **{best.member}**, score {fmt(best.score)} ({best.basis})",
        f"population mean: {fmt(float(finite.mean())) if len(finite) else '-'}",
        f"exploits: {len(exploits)}"
        + (f"; scheduled config changes: {scheduled}" if scheduled else ""),
        "best member's hyperparameters at the end: "
        + ", ".join(f"`{k}={fmt(v)}`" for k, v in final_config.items()),
        "lineage of the best member (oldest first): "
        + " -> ".join(f"member {h['member']} ({h['from']:g}-{h['to']:g})" for h in held),
    ]
    edges = experiment_edge_hits(exp)
    summary += [f"range edge: {hit.sentence()}" for hit in edges]
    if exp.state("retrain"):
        r = exp.state("retrain")
        n = r.get("seeds", 1)
        if n == 1:
            scored = f"this member scored {fmt(r['retrained'])}"
        else:
            spread = (
                f", 95% interval [{fmt(r['interval'][0])}, {fmt(r['interval'][1])}]"
                if r.get("interval")
                else ""
            )
            scored = f"these {n} members scored a mean {fmt(r['retrained'])}{spread}"
        summary.append(
            f"a retrain of member {r['source_best_member']}'s lineage schedule in "
            f"`{r['source']}`: {scored}, the population's best there "
            f"{fmt(r['population_best'])} ({r['score_basis']})"
        )
    counts = decisions["kind"].value_counts().to_dict() if len(decisions) else {}
    shown = min(int(counts.get("exploit", 0)), MAX_DECISION_ROWS)
    sections: dict[str, list[Block]] = {
        "summary": [("bullets", summary)],
        "scores": [
            *(
                [
                    (
                        "text",
                        f"The curves are the {column} each member reported while training; the "
                        f"stars at their ends are the final score the summary gives "
                        f"({best.basis}), the largest member {best.member}'s.",
                    )
                ]
                if final is not None
                else []
            ),
            ("table", _scores_table(exp, best, column)),
        ],
        "hyperparameters": [
            (
                "text",
                "The hyperparameters the best member's weights trained with, interval by "
                "interval, following its exploits back in time (`gpbt export` writes this "
                "schedule to schedule.json, `gpbt retrain` trains a fresh member on it).",
            ),
            ("table", _schedule_table(entries)),
            *([("bullets", [f"range edge: {hit.sentence()}" for hit in edges])] if edges else []),
        ],
        "lineage": [
            (
                "text",
                "Who held the best member's weights when: at each hand-over the later member "
                "copied the earlier one's weights.",
            ),
            ("table", pd.DataFrame(held)),
        ],
        "decisions": [
            (
                "text",
                f"{len(decisions)} decisions"
                + "".join(f", {v} {k}" for k, v in sorted(counts.items()))
                + ". Every exploit (who copied whom, when, with which scores, old -> new "
                + "hyperparameters)"
                + ("" if shown == counts.get("exploit", 0) else f", the first {shown}")
                + "; all decisions are in experiment.sqlite (`gpbt.load(FOLDER).decisions`).",
            ),
            ("table", _decision_table(decisions) if len(decisions) else pd.DataFrame()),
        ],
    }
    plots = {
        "scores": ("returns.png", "score of every member"),
        "hyperparameters": ("hyperparameters.png", "hyperparameter schedules"),
        "lineage": ("lineage.png", "lineage of the final best member"),
    }
    figures: dict[str, list[tuple[str, str]]] = {}
    for key, (name, caption) in plots.items():
        if failed[key] is not None:
            sections[key].append(("text", f"The plot was not drawn: {failed[key]}."))
        # no hyperparameter plot when nothing is searched (method = "default")
        figures[key] = [(name, caption)] if failed[key] is None and (out / name).exists() else []
    if animate:
        gif = out / "episode.gif"
        gif.unlink(missing_ok=True)  # a GIF from an earlier report is not this one's
        try:
            sections["episode"], figures["episode"] = _episode(exp, out, warn)
        except Exception as err:  # noqa: BLE001 - any failure: a sentence and a warning
            _raise_if_disk_fault(err)
            reason = describe_failure(err)
            warn(f"report: the episode animation not drawn ({reason}); {REST_WRITTEN}")
            gif.unlink(missing_ok=True)
            failed_text = f"No animation: drawing the episode failed ({reason})."
            sections["episode"] = [("text", failed_text)]
    else:
        sections["episode"] = [("text", "No animation (written with --no-animation).")]
    _write(out, f"Experiment report: {method} on {env}", sections, figures)
    return out


def _write(out: Path, title: str, sections: dict[str, list[Block]], figures: dict) -> None:
    lines = [f"# {title}", ""]
    body: list[tuple[str, str, str]] = []
    for key, heading in SECTIONS:
        blocks, figs = sections.get(key, []), figures.get(key, [])
        lines += [f"## {heading}", "", blocks_md(blocks), ""]
        lines += [f"![{caption}]({name})\n" for name, caption in figs]
        inner = blocks_html(blocks) + "".join(figure_html(out / n, c) for n, c in figs)
        body.append((key, heading, inner))
    (out / "summary.md").write_text("\n".join(lines))
    (out / "report.html").write_text(html_page(title, body))
