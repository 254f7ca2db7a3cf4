"""Issue 15: why does Pairwise Learning lose to PBT, and which pairwise variant fixes it?

Toy experiments only (seconds each, no JAX). Every run is lockstep, like the vector engine:
all members train one interval, report, and the scheduler decides for the whole population.

    python benchmarks/pairwise_research.py diagnose --seeds 200   # docs/research/*.png + JSON
    python benchmarks/pairwise_research.py screen --seeds 200
    python benchmarks/pairwise_research.py plots                  # rebuild the PNGs from JSON

Results go to `benchmarks/results/pairwise/<experiment>.json` (small, committed), the plots to
`docs/research/`. Seed s gives every method the same initial population, the same toy noise and
the same evaluation noise (common random numbers), so method differences are paired by seed.

Toys (each can add *evaluation noise*: the scheduler sees `true score + N(0, eval_noise^2)`,
drawn fresh every generation and never carried by a copy, as an RL return measured on a few
training episodes; a run's result is the TRUE score of its best member at the end, as the
benchmark's 32-episode final evaluation):

- `quadratic`: the PBT paper's toy (gpbt.engines.toys.QuadraticToy), deterministic.
- `moving`: gpbt.engines.toys.MovingOptimumToy: one log learning rate whose best value drifts from
  high to low; the score is the accumulated gain (20 generations here).
- `moving7`: the same drift on 2 of 7 parameters, a fixed optimum on a third and 4 parameters
  that do not matter: the seven-hyperparameter PPO space in miniature.
- `jump`: the optimum sits low for the first half and jumps high for the second half: a
  population that has collapsed must travel; one that kept its spread has members nearby.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpbt.core.decisions import Exploit
from gpbt.core.methods import make_scheduler
from gpbt.core.schedulers import GPBT
from gpbt.core.space import Float, Space
from gpbt.core.strategies import ExploreContext, Strategy
from gpbt.engines.toys import MovingOptimumToy, QuadraticToy

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "pairwise"
PLOTS = ROOT / "docs" / "research"


# ---------------------------------------------------------------------------------- toys
class DriftToy:
    """Gain per step exp(-sum_j (u_j - o_j(t))^2 / (2 w^2)) over the relevant parameters, plus
    a little carried noise; the score is the accumulated gain (as a return that grows with
    training). `optima(t)` gives the relevant parameters' optimum (unit coordinates)."""

    def __init__(self, name, space, optima, steps, interval, width=0.15, noise=0.02):
        self.name, self.space, self.optima = name, space, optima
        self.steps, self.interval, self.width, self.noise = steps, interval, width, noise
        self.relevant = list(optima(0))

    def init_state(self, rng):
        return np.zeros(1)

    def step(self, state, config, t, rng):
        opt = self.optima(t)
        d2 = sum((self.space.params[n].to_unit(config[n]) - o) ** 2 for n, o in opt.items())
        return state + math.exp(-d2 / (2 * self.width**2)) + self.noise * rng.standard_normal()

    def score(self, state):
        return float(state[0])

    def tracking_error(self, config, t):
        opt = self.optima(t)
        return math.sqrt(
            sum((self.space.params[n].to_unit(config[n]) - o) ** 2 for n, o in opt.items())
        )


def make_toy(name: str):
    if name == "quadratic":
        return QuadraticToy()
    if name == "moving":
        base = MovingOptimumToy()
        steps, interval = 100, 5  # 20 generations, as the long suites
        return DriftToy(
            "moving",
            base.space,
            lambda t: {"lr": 0.85 - 0.7 * t / steps},
            steps,
            interval,
            base.width,
            base.noise,
        )
    if name == "moving7":
        steps, interval = 100, 5
        space = Space({f"p{j}": Float(0.0, 1.0) for j in range(7)})
        return DriftToy(
            "moving7",
            space,
            lambda t: {"p0": 0.85 - 0.7 * t / steps, "p1": 0.2 + 0.6 * t / steps, "p2": 0.5},
            steps,
            interval,
            width=0.25,
        )
    if name == "moving3-long":
        # the IMPALA suite's shape: 3 parameters (2 drift, 1 does not matter), 60 generations
        steps, interval = 300, 5
        space = Space({f"p{j}": Float(0.0, 1.0) for j in range(3)})
        return DriftToy(
            "moving3-long",
            space,
            lambda t: {"p0": 0.85 - 0.7 * t / steps, "p1": 0.3 + 0.4 * t / steps},
            steps,
            interval,
            width=0.2,
        )
    if name == "jump":
        steps, interval = 100, 5
        space = Space({"lr": Float(1e-4, 1e-1, log=True), "h": Float(0.0, 1.0)})
        return DriftToy(
            "jump",
            space,
            lambda t: {"lr": 0.2 if t <= steps // 2 else 0.8},
            steps,
            interval,
        )
    raise ValueError(f"unknown toy {name!r}")


# ------------------------------------------------------------------ diagnostic strategies
class KeepOwnConfig(Strategy):
    """Diagnostic: the loser copies the winner's weights and keeps its own hyperparameters."""

    name = "keep-own"

    def explore(self, ctx: ExploreContext):
        return dict(ctx.loser_config), dict(ctx.loser_state)


def build(method: str, options: dict, toy, seed: int):
    options = dict(options)
    if options.get("strategy") == "keep-own":
        options.pop("strategy")
        return GPBT(
            toy.space,
            KeepOwnConfig(),
            pairing=options.pop("pairing", "random"),
            perturbation_interval=toy.interval,
            seed=seed,
        )
    return make_scheduler(
        method, toy.space, perturbation_interval=toy.interval, seed=seed, options=options
    )


# ---------------------------------------------------------------------------------- runner
@dataclass
class Run:
    best: float  # true score of the member with the best true score at the end
    mean: float
    diversity: list[float]
    exploits: int
    decisions: int
    wrong: int  # exploits whose donor's TRUE score was below the loser's
    tracking: list[float]  # best member's distance to the optimum (drift toys)
    decision_ms: float


def run(toy, method: str, options: dict, population: int, seed: int, eval_noise: float) -> Run:
    sched = build(method, options, toy, seed)
    env_rng = np.random.default_rng([seed, 7919])
    configs = sched.initial_population(population)
    states = [toy.init_state(env_rng) for _ in range(population)]
    member_rngs = [np.random.default_rng([seed, i]) for i in range(population)]
    diversity = [sched.space.diversity(configs)]
    tracking: list[float] = []
    exploits = decisions = wrong = 0
    spent = 0.0
    for t in range(1, toy.steps + 1):
        states = [toy.step(s, configs[i], t, member_rngs[i]) for i, s in enumerate(states)]
        if t % toy.interval and t != toy.steps:
            continue
        true = np.array([toy.score(s) for s in states])
        noise = np.random.default_rng([seed, 104729, t]).standard_normal(population)
        observed = true + eval_noise * noise
        if hasattr(toy, "tracking_error"):
            tracking.append(toy.tracking_error(configs[int(np.argmax(true))], t))
        start = time.perf_counter()
        out = sched.on_generation(t, {i: float(observed[i]) for i in range(population)})
        spent += time.perf_counter() - start
        snapshot = [s.copy() for s in states]
        for i, d in out.items():
            decisions += 1
            if isinstance(d, Exploit):
                exploits += 1
                wrong += int(true[d.donor] < true[i])
                states[i] = snapshot[d.donor].copy()
                configs[i] = d.config
        diversity.append(sched.space.diversity(configs))
    final = np.array([toy.score(s) for s in states])
    return Run(
        best=float(final.max()),
        mean=float(final.mean()),
        diversity=diversity,
        exploits=exploits,
        decisions=decisions,
        wrong=wrong,
        tracking=tracking,
        decision_ms=1e3 * spent / max(1, len(diversity) - 1),
    )


# ----------------------------------------------------------------------------- experiments
# (label, method, options). The diagnosis separates four suspects:
#  diversity  : PL vs PL + exploration at the same exploit rate (resample 0.25, gpbt+perturb)
#  greed      : random pairing (about half the population copies) vs truncation (a quarter)
#               and sync pairs; evaluation noise 0 vs >0 shows what noisy copies cost
#  momentum   : w_inertia 1 vs 0
#  partner    : copying the weights alone (keep-own) vs PL, and the share of wrong copies
BASELINES = [
    ("pbt", "pbt", {}),
    ("pb2", "pb2", {}),
    ("random", "random", {}),
]
DIAGNOSIS = BASELINES + [
    ("gpbt-pl", "gpbt-pl", {}),
    ("pl no-momentum", "gpbt-pl", {"w_inertia": 0.0}),
    ("pl clamp=0.1", "gpbt-pl", {"velocity_clamp": 0.1}),
    ("pl sync", "gpbt-pl", {"pairing": "sync"}),
    ("pl truncation", "gpbt-pl", {"pairing": "truncation"}),
    ("pl resample=0.25", "gpbt-pl", {"resample_probability": 0.25}),
    ("pairs+perturb", "gpbt-pl", {"strategy": "perturb"}),
    ("pairs+copy-config", "gpbt-pl", {"strategy": "copy"}),
    ("pairs+keep-own", "gpbt-pl", {"strategy": "keep-own"}),
    ("truncation+keep-own", "gpbt-pl", {"strategy": "keep-own", "pairing": "truncation"}),
]
TOY_GRID = [
    # (toy, eval_noise, population)
    ("quadratic", 0.0, 8),
    ("moving", 0.0, 8),
    ("moving", 1.0, 8),
    ("moving", 3.0, 8),
    ("moving7", 1.0, 8),
    ("moving7", 1.0, 4),
    ("jump", 1.0, 8),
]
# Candidates (issue 15): the loser still learns from its winner; each adds what PL lacks.
CANDIDATES = [
    ("gpbt-pl", "gpbt-pl", {}),
    ("jitter=0.2", "gpbt-pl", {"spread_jitter": 0.2}),
    ("escape=0.1", "gpbt-pl", {"escape_distance": 0.1}),
    ("escape=0.2", "gpbt-pl", {"escape_distance": 0.2}),
    ("margin=0.5", "gpbt-pl", {"copy_margin": 0.5}),
    ("repel=-0.5", "gpbt-pl", {"w_center": -0.5}),
    ("anchor=winner", "gpbt-pl", {"anchor": "winner"}),
    ("winner+jitter=0.1", "gpbt-pl", {"anchor": "winner", "spread_jitter": 0.1}),
    ("escape=0.1+jitter=0.1", "gpbt-pl", {"escape_distance": 0.1, "spread_jitter": 0.1}),
    ("escape=0.1+winner", "gpbt-pl", {"escape_distance": 0.1, "anchor": "winner"}),
    ("escape=0.1+margin=0.5", "gpbt-pl", {"escape_distance": 0.1, "copy_margin": 0.5}),
    ("pairs+perturb", "gpbt-pl", {"strategy": "perturb"}),
]
SCREEN = BASELINES + CANDIDATES
# The long suites' other regime (IMPALA: 3 parameters, 60 decisions per run)
LONG_GRID = [("moving3-long", 1.0, 4), ("moving3-long", 1.0, 8), ("moving3-long", 3.0, 8)]
# After the screen, the Acrobot development screen and the long toy: the escape family with
# and without the copy margin, global (fresh draw) or local (near the winner), on every toy
REFINE = [
    ("pbt", "pbt", {}),
    ("pb2", "pb2", {}),
    ("gpbt-pl", "gpbt-pl", {}),
    ("escape=0.1", "gpbt-pl", {"escape_distance": 0.1}),
    ("escape=0.1+margin=0.5", "gpbt-pl", {"escape_distance": 0.1, "copy_margin": 0.5}),
    ("escape=0.1+margin=1", "gpbt-pl", {"escape_distance": 0.1, "copy_margin": 1.0}),
    ("local-escape", "gpbt-pl", {"escape_distance": 0.1, "escape_step": 0.1}),
    (
        "local-escape+margin=0.5",
        "gpbt-pl",
        {"escape_distance": 0.1, "escape_step": 0.1, "copy_margin": 0.5},
    ),
    ("pairs+perturb", "gpbt-pl", {"strategy": "perturb"}),
]
EXPERIMENTS: dict[str, list] = {
    "diagnose": DIAGNOSIS,
    "screen": SCREEN,
    "refine": REFINE,
}
GRIDS = {"refine": TOY_GRID + LONG_GRID}


def experiment(name: str, methods, seeds: int, grid=TOY_GRID) -> dict[str, Any]:
    out: dict[str, Any] = {"experiment": name, "seeds": seeds, "cells": []}
    for toy_name, noise, pop in grid:
        toy = make_toy(toy_name)
        for label, method, options in methods:
            runs = [run(toy, method, options, pop, s, noise) for s in range(seeds)]
            cell = {
                "toy": toy_name,
                "eval_noise": noise,
                "population": pop,
                "label": label,
                "method": method,
                "options": options,
                "best": [r.best for r in runs],
                "mean": [r.mean for r in runs],
                "diversity": np.mean([r.diversity for r in runs], axis=0).tolist(),
                "exploit_rate": float(np.mean([r.exploits / max(1, r.decisions) for r in runs])),
                "wrong_share": float(
                    sum(r.wrong for r in runs) / max(1, sum(r.exploits for r in runs))
                ),
                "tracking": np.mean([r.tracking for r in runs], axis=0).tolist()
                if runs[0].tracking
                else [],
                "decision_ms": float(np.median([r.decision_ms for r in runs])),
            }
            out["cells"].append(cell)
            print(summary_line(cell, out["cells"]), flush=True)
    return out


def paired(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean paired difference, its standard error, and P(a > b) over seeds (ties count half)."""
    d = np.asarray(a) - np.asarray(b)
    p = float(np.mean(d > 0) + 0.5 * np.mean(d == 0))
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))), p


def summary_line(cell, cells) -> str:
    ref = next(
        (
            c
            for c in cells
            if c["label"] == "pbt"
            and (c["toy"], c["eval_noise"], c["population"])
            == (cell["toy"], cell["eval_noise"], cell["population"])
        ),
        None,
    )
    vs = ""
    if ref is not None and ref is not cell:
        diff, se, p = paired(cell["best"], ref["best"])
        vs = f" vs pbt {diff:+.3f}±{se:.3f} P={p:.2f}"
    return (
        f"{cell['toy']:>9} noise={cell['eval_noise']:<3} pop={cell['population']} "
        f"{cell['label']:<24} best {np.mean(cell['best']):8.3f} div {cell['diversity'][0]:.2f}"
        f"->{cell['diversity'][-1]:.2f} exploit {cell['exploit_rate']:.2f} wrong "
        f"{cell['wrong_share']:.2f}{vs}"
    )


# ----------------------------------------------------------------------------------- plots
def plots(name: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads((RESULTS / f"{name}.json").read_text())
    cells = data["cells"]
    PLOTS.mkdir(parents=True, exist_ok=True)
    groups = sorted(
        {(c["toy"], c["eval_noise"], c["population"]) for c in cells},
        key=lambda g: (TOY_GRID + LONG_GRID).index(g) if g in TOY_GRID + LONG_GRID else 99,
    )
    written = []
    # 1. diversity over generations, one panel per toy setting
    ncol = min(4, len(groups))
    nrow = math.ceil(len(groups) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.0 * nrow), squeeze=False)
    flat = axes.ravel()
    for ax in flat[len(groups) :]:
        ax.axis("off")
    order = list(dict.fromkeys(c["label"] for c in cells))
    style = {
        lab: {"color": plt.cm.tab20(k % 20), "ls": "-" if k < 10 else "--"}
        for k, lab in enumerate(order)
    }
    for ax, g in zip(flat, groups, strict=False):
        for c in cells:
            if (c["toy"], c["eval_noise"], c["population"]) == g:
                ax.plot(c["diversity"], label=c["label"], lw=1.2, **style[c["label"]])
        ax.set_title(f"{g[0]} noise={g[1]} pop={g[2]}", fontsize=8)
        ax.set_xlabel("generation", fontsize=8)
        ax.tick_params(labelsize=7)
    for row in axes:
        row[0].set_ylabel("diversity (unit-space mean distance)", fontsize=7)
    handles, names = flat[0].get_legend_handles_labels()
    (flat[-1] if len(groups) < len(flat) else flat[ncol - 1]).legend(
        handles, names, fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5)
    )
    fig.tight_layout()
    path = PLOTS / f"{name}-diversity.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
    # 2. paired difference to PBT (mean +- 2 s.e.) per method and toy setting
    labels = [lab for lab in dict.fromkeys(c["label"] for c in cells) if lab != "pbt"]
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(3.6 * ncol, (0.22 * len(labels) + 1.0) * nrow),
        squeeze=False,
        sharey=True,
    )
    flat = axes.ravel()
    for ax in flat[len(groups) :]:
        ax.axis("off")
    for ax, g in zip(flat, groups, strict=False):
        gc = {c["label"]: c for c in cells if (c["toy"], c["eval_noise"], c["population"]) == g}
        ref = gc.get("pbt")
        for k, lab in enumerate(labels):
            if ref is None or lab not in gc:
                continue
            diff, se, _ = paired(gc[lab]["best"], ref["best"])
            scale = np.std(ref["best"], ddof=1) or 1.0
            ax.errorbar(diff / scale, k, xerr=2 * se / scale, fmt="o", ms=3, lw=1)
        ax.axvline(0, color="k", lw=0.6)
        ax.set_title(f"{g[0]} noise={g[1]} pop={g[2]}", fontsize=8)
        ax.set_xlabel("best - pbt (in pbt's s.d.)", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0][0].set_yticks(range(len(labels)), labels)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    path = PLOTS / f"{name}-vs-pbt.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
    return written


def table(name: str) -> str:
    """The Markdown table the research note quotes."""
    data = json.loads((RESULTS / f"{name}.json").read_text())
    lines = [
        "| toy | method | best (mean) | vs pbt: diff ± s.e., P(>pbt) | diversity end |"
        " exploit rate | wrong copies |",
        "|---|---|---|---|---|---|---|",
    ]
    cells = data["cells"]
    for c in cells:
        ref = next(
            x
            for x in cells
            if x["label"] == "pbt"
            and (x["toy"], x["eval_noise"], x["population"])
            == (c["toy"], c["eval_noise"], c["population"])
        )
        diff, se, p = paired(c["best"], ref["best"])
        vs = "-" if c is ref else f"{diff:+.3f} ± {se:.3f}, {p:.2f}"
        lines.append(
            f"| {c['toy']} σ={c['eval_noise']:g} N={c['population']} | {c['label']} | "
            f"{np.mean(c['best']):.3f} | {vs} | {c['diversity'][-1]:.2f} | "
            f"{c['exploit_rate']:.2f} | {c['wrong_share']:.2f} |"
        )
    return "\n".join(lines)


def selection(names: list[str]) -> str:
    """One line per method over every toy setting of the named experiments: paired differences
    to PBT and PB2 in units of the baseline's s.d. (mean over settings), how many settings it
    wins / loses by more than 2 standard errors, P(method > baseline) over seeds (mean over
    settings), and its final diversity relative to PBT's."""
    cells = []
    for name in names:
        cells += json.loads((RESULTS / f"{name}.json").read_text())["cells"]
    settings = list(dict.fromkeys((c["toy"], c["eval_noise"], c["population"]) for c in cells))
    labels = list(dict.fromkeys(c["label"] for c in cells))
    by = {(c["toy"], c["eval_noise"], c["population"], c["label"]): c for c in cells}
    lines = [
        "| method | settings | vs pbt: mean diff (s.d.), wins/losses, P(>pbt) |"
        " vs pb2: mean diff (s.d.), wins/losses, P(>pb2) | diversity end / pbt's |",
        "|---|---|---|---|---|",
    ]
    for lab in labels:
        if lab in ("pbt", "pb2"):
            continue
        parts = []
        for base in ("pbt", "pb2"):
            diffs, ps, wins, losses = [], [], 0, 0
            for g in settings:
                if (*g, lab) not in by or (*g, base) not in by:
                    continue
                a, b = by[(*g, lab)]["best"], by[(*g, base)]["best"]
                diff, se, p = paired(a, b)
                scale = float(np.std(b, ddof=1)) or 1.0
                diffs.append(diff / scale)
                ps.append(p)
                wins += diff > 2 * se
                losses += diff < -2 * se
            parts.append(f"{np.mean(diffs):+.2f}, {wins}/{losses}, {np.mean(ps):.2f}")
        ratios = [
            by[(*g, lab)]["diversity"][-1] / by[(*g, "pbt")]["diversity"][-1]
            for g in settings
            if (*g, lab) in by and (*g, "pbt") in by
        ]
        n = sum((*g, lab) in by for g in settings)
        lines.append(f"| {lab} | {n} | {parts[0]} | {parts[1]} | {np.mean(ratios):.2f} |")
    return "\n".join(lines)


def _rounded(x):
    """Floats to 5 decimals: the committed JSON stays small, the statistics unchanged."""
    if isinstance(x, float):
        return round(x, 5)
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return x


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=[*EXPERIMENTS, "plots", "table", "select"])
    p.add_argument("--seeds", type=int, default=200)
    p.add_argument("--name", default=None, help="experiment name for plots/table")
    args = p.parse_args(argv)
    if args.what == "plots":
        for path in plots(args.name or "diagnose"):
            print(path)
        return 0
    if args.what == "select":
        print(selection((args.name or "refine").split(",")))
        return 0
    if args.what == "table":
        print(table(args.name or "diagnose"))
        return 0
    data = experiment(args.what, EXPERIMENTS[args.what], args.seeds, GRIDS.get(args.what, TOY_GRID))
    data["commit"] = os.popen("git rev-parse --short HEAD").read().strip()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.what}.json").write_text(json.dumps(_rounded(data)))
    for path in plots(args.what):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
