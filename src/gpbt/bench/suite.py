"""Suite files: which tasks, which methods, how many seeds; and the fairness rules built in.

A suite is a TOML file (the shipped ones are in `gpbt/bench/suites/`; docs/benchmarks.md):

    name = "smoke"
    seeds = 2                       # seeds 0..1, or a list [0, 3, 7]
    reference = "gpbt-pl"           # the method the win/tie/loss statement is about
    [config]                        # shared by every task and method: agent, space, ...
    [[tasks]]                       # a vector-engine task: env + any config key it overrides
    name = "CartPole-v1"; env = "CartPole-v1"; total_steps = 20_000; perturbation_interval = 5_000
    grid = { population = [4, 8] }  # optional: one task per value ("CartPole-v1@population=4")
    score_range = [0, 500]          # optional: fixed normalisation (else min-max over the runs)
    [[tasks]]                       # a toy task (gpbt.engines.toys), seconds, no JAX
    name = "quadratic"; toy = "quadratic"
    [[methods]]
    name = "gpbt-pl-sync"; method = "gpbt-pl"; options = { pairing = "sync" }
    [variants.full]                 # `gpbt bench SUITE:full`: tables merged over the suite,
    seeds = 10                      # lists (tasks, methods) replaced whole
    defaults_outside = "why"        # only if the space does not hold the agent's defaults
                                    # well inside its ranges (tests/test_suite_ranges.py)

Fairness is structural: a method entry can only carry its scheduler's options, never a config
key, so every method of a task gets the same space, budget, interval and agent; the seed is the
engine seed, from which the initial hyperparameters (the scheduler's first draws), weights and
environment seeds all derive. `check_fairness` re-checks this on the built cells anyway, so a
future change of this file cannot quietly break it.

Three kinds of rows differ in their hyperparameters on purpose, and say so (`Cell.row`):
- `method = "default"` (row "default"): every member trains with the agent's defaults, no
  search, no exploit; same budget, population and initial weights.
- `tune = [names]` (row "subset"): the method searches only these names of the task's space,
  the others train at the agent's defaults. The paper-protocol rows use it: the released
  scripts gave PBT and PB2 four of GPBT-PL's seven PPO hyperparameters.
- `start_points = [{...}, ...]` (row "anchored"): the method searches the whole space, but
  members 0, 1, ... start at these values (the run config's `start_points`) and the rest at the
  draws every equal row starts from; e.g. PBT with one member at the agent's defaults
  (`start_points = ["defaults"]`, resolved against the task's agent, or a toy's defaults). A
  table of such lists keyed by task name (`{ "Pendulum-v1" = [...], ... }`, one per task, grid
  points share their task's) anchors each task at its own points.
`note` labels a row. Everything else (budget, interval, population, agent, env, seed, and the
ranges of the names a subset row does search) must still match the task's equal rows, and the
audit still compares their initial weights and code.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpbt.config import ConfigError, read_toml, validate_config
from gpbt.core.methods import METHODS, make_scheduler
from gpbt.core.space import Space
from gpbt.spec import with_defaults

SUITE_KEYS = {
    "name",
    "description",
    "seeds",
    "reference",
    "score",
    "config",
    "tasks",
    "methods",
    "variants",
    "notes",
    "defaults_outside",
}
TASK_META_KEYS = {"name", "toy", "toy_options", "grid", "score_range", "label"}
# what a toy task reads (the rest of a task's keys configure the vector engine)
TOY_TASK_KEYS = TASK_META_KEYS | {"population", "base_task", "grid_point"}
METHOD_KEYS = {"name", "method", "options", "tune", "start_points", "note"}
# what a row's hyperparameters are, relative to the task's space (see the module docstring)
ROWS = ("equal", "default", "subset", "anchored")
# final_test (the default): the member picked on a selection evaluation, scored on fresh test
# episodes (gpbt.core.selection). final_best, the selection maximum, is a winner's curse kept for
# the suites measured before final_test existed (they say score = "final_best").
SCORES = ("final_test", "final_best", "final_mean", "final_test_mean", "auc")


def suites_dir() -> Path:
    """The suites shipped with the package (package data, so `gpbt bench NAME` works from an
    installed wheel and from any working directory)."""
    return Path(__file__).resolve().parent / "suites"


def known_suites() -> list[str]:
    return sorted(p.stem for p in suites_dir().glob("*.toml"))


@dataclass(frozen=True)
class Cell:
    """One (task, method, seed): one experiment folder, one run."""

    task: str
    method: str
    seed: int
    kind: str  # "vector" or "toy"
    config: dict[str, Any] = field(hash=False, compare=False)
    row: str = field(default="equal", compare=False)  # one of ROWS
    note: str = field(default="", compare=False)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.task, self.method, self.seed)

    @property
    def relpath(self) -> str:
        return f"{_safe(self.task)}/{_safe(self.method)}/seed{self.seed}"


@dataclass
class Suite:
    name: str
    description: str
    seeds: list[int]
    reference: str
    score: str
    tasks: list[dict[str, Any]]  # expanded: one entry per grid point, with "name"
    methods: list[dict[str, Any]]
    raw: dict[str, Any]
    path: str
    variant: str | None = None
    notes: str = ""
    # why the space does not hold the agent's defaults well inside (empty: it does)
    defaults_outside: str = ""

    @property
    def label(self) -> str:
        return self.name + (f":{self.variant}" if self.variant else "")

    def task_names(self) -> list[str]:
        return [t["name"] for t in self.tasks]

    def match_tasks(self, patterns: list[str]) -> list[str]:
        """The task names matching any of the shell-style `patterns` ('Freeway-*',
        '*@population=8'), in the suite's order; a pattern that matches none is an error."""
        return self._match("task", self.task_names(), patterns)

    def method_names(self) -> list[str]:
        return [m["name"] for m in self.methods]

    def match_methods(self, patterns: list[str]) -> list[str]:
        """The method (row) names matching any of the shell-style `patterns` ('default',
        'pbt-*'), in the suite's order; a pattern that matches none is an error."""
        return self._match("method", self.method_names(), patterns)

    def _match(self, kind: str, names: list[str], patterns: list[str]) -> list[str]:
        # kind names the CLI option (--tasks, --methods) the patterns came from
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise ConfigError(
                    f"--{kind}s {pattern!r} matches no {kind} of suite {self.label}; "
                    f"its {kind}s: " + ", ".join(names)
                )
        return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]

    def select(
        self, tasks: list[str] | None = None, methods: list[str] | None = None
    ) -> tuple[list[str], list[str]]:
        """(task names, method names) that `gpbt bench --tasks ... --methods ...` runs: those
        matching the patterns (`match_tasks`, `match_methods`), all of a kind given None."""
        return (
            self.match_tasks(tasks) if tasks else self.task_names(),
            self.match_methods(methods) if methods else self.method_names(),
        )

    def score_ranges(self) -> dict[str, tuple[float, float]]:
        return {t["name"]: tuple(t["score_range"]) for t in self.tasks if t.get("score_range")}

    def cells(self) -> list[Cell]:
        """Seed-major order: an interrupted bench has whole seeds for every task and method."""
        out = []
        for seed in self.seeds:
            for task in self.tasks:
                for m in self.methods:
                    out.append(_make_cell(self, task, m, seed))
        check_fairness(out)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "variant": self.variant,
            "description": self.description,
            "seeds": self.seeds,
            "reference": self.reference,
            "score": self.score,
            "tasks": self.tasks,
            "methods": self.methods,
            "path": self.path,
            "notes": self.notes,
            "defaults_outside": self.defaults_outside,
            "raw": self.raw,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Suite:
        """The suite as stored in a bench folder (tasks already expanded)."""
        return cls(
            name=d["name"],
            description=d.get("description", ""),
            seeds=list(d["seeds"]),
            reference=d["reference"],
            score=d.get("score", "final_best"),
            tasks=list(d["tasks"]),
            methods=list(d["methods"]),
            raw=d.get("raw") or {"config": {}},
            path=d.get("path", ""),
            variant=d.get("variant"),
            notes=d.get("notes", ""),
            defaults_outside=d.get("defaults_outside", ""),
        )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=@,+-]+", "_", name)


def _merge(base: dict, over: dict) -> dict:
    """Tables merge key by key; anything else (lists included) is replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_suite(spec: str | Path, seeds: int | None = None) -> Suite:
    """`spec`: a suite name (gpbt/bench/suites/NAME.toml), a path, either with `:variant`."""
    text = str(spec)
    variant = None
    # "C:\..." is not a variant; a name or a relative path with one colon is.
    if ":" in text and not Path(text).exists():
        text, variant = text.rsplit(":", 1)
    path = Path(text)
    if not path.suffix:
        candidate = suites_dir() / f"{text}.toml"
        path = candidate if candidate.exists() else Path(text + ".toml")
    if not path.exists():
        raise ConfigError(
            f"suite {text!r} not found (looked for {path}); known suites: {known_suites()}"
        )
    raw = read_toml(path, "suite file")
    unknown = sorted(set(raw) - SUITE_KEYS)
    if unknown:
        raise ConfigError(
            f"suite {path}: unknown key {unknown[0]!r}; allowed keys are {sorted(SUITE_KEYS)}"
        )
    variants = raw.pop("variants", {}) or {}
    if variant is not None:
        if variant not in variants:
            raise ConfigError(
                f"suite {path} has no variant {variant!r}; variants: {sorted(variants)}"
            )
        over = variants[variant]
        bad = sorted(set(over) - (SUITE_KEYS - {"variants", "name"}))
        if bad:
            raise ConfigError(f"suite {path} variant {variant!r}: unknown key {bad[0]!r}")
        raw = _merge(raw, over)
    return build_suite(raw, path=str(path), variant=variant, seeds=seeds)


def build_suite(
    raw: dict[str, Any], *, path: str = "<dict>", variant: str | None = None, seeds=None
) -> Suite:
    where = f"suite {path}" + (f" (variant {variant})" if variant else "")
    name = raw.get("name") or Path(path).stem
    n_seeds = raw.get("seeds", 3) if seeds is None else seeds
    if isinstance(n_seeds, int) and not isinstance(n_seeds, bool):
        if n_seeds < 1:
            raise ConfigError(f"{where}: seeds = {n_seeds} must be >= 1")
        seed_list = list(range(n_seeds))
    elif (
        isinstance(n_seeds, list)
        and n_seeds
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in n_seeds)
        and len(set(n_seeds)) == len(n_seeds)
    ):
        seed_list = list(n_seeds)
    else:
        raise ConfigError(
            f"{where}: seeds = {n_seeds!r}; give a count (seeds = 5) or a list of distinct "
            "whole numbers >= 0 (seeds = [0, 1, 2]); a repeated seed would count a run twice"
        )
    tasks_raw = raw.get("tasks") or []
    methods_raw = raw.get("methods") or []
    if not tasks_raw:
        raise ConfigError(f"{where}: no [[tasks]]; add at least one task")
    if not methods_raw:
        raise ConfigError(f"{where}: no [[methods]]; add e.g. name = 'gpbt-pl', method = 'gpbt-pl'")
    for key, entries, example in (
        ("tasks", tasks_raw, '[[tasks]]\nenv = "Breakout-MinAtar"'),
        ("methods", methods_raw, '[[methods]]\nname = "pbt"\nmethod = "pbt"'),
    ):
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(
                f"{where}: {key} = {entries!r}; give one table per entry, written "
                f"[[{key}]] (e.g. {example!r})"
            )
    methods = []
    for i, m in enumerate(methods_raw):
        bad = sorted(set(m) - METHOD_KEYS)
        if bad:
            # The fairness rule: a method may not bring its own budget, space or interval.
            raise ConfigError(
                f"{where}: method #{i} has key {bad[0]!r}; a method entry has only name, "
                "method, options (its scheduler's options), tune, start_points and note. "
                "Budget, space and interval belong to the task, so that every method gets the "
                "same"
            )
        if m.get("method") not in METHODS:
            raise ConfigError(
                f"{where}: method #{i} method = {m.get('method')!r}; use one of {list(METHODS)}"
            )
        if not isinstance(m.get("options", {}), dict):
            raise ConfigError(
                f"{where}: method #{i} options = {m['options']!r}; give a table of the "
                "scheduler's options, e.g. options = { quantile_fraction = 0.25 }"
            )
        entry = {
            "name": str(m.get("name") or m["method"]),
            "method": m["method"],
            "options": dict(m.get("options") or {}),
        }
        if "tune" in m:
            tune = m["tune"]
            if (
                not isinstance(tune, list)
                or not tune
                or not all(isinstance(x, str) for x in tune)
                or len(set(tune)) != len(tune)
            ):
                raise ConfigError(
                    f"{where}: method {entry['name']!r} tune = {tune!r}; give a list of distinct "
                    "hyperparameter names of the task's space, e.g. tune = ['lr', 'clip']"
                )
            if m["method"] == "default":
                raise ConfigError(
                    f"{where}: method {entry['name']!r} is method 'default', which searches "
                    "nothing; remove its tune list"
                )
            entry["tune"] = list(tune)
        if "start_points" in m:
            if m["method"] == "default" or "tune" in m:
                raise ConfigError(
                    f"{where}: method {entry['name']!r} has start_points and "
                    f"{'is method default' if m['method'] == 'default' else 'a tune list'}; "
                    "an anchored row searches the whole space from given start points, so "
                    "give it neither"
                )
            points = m["start_points"]
            per_task = points.values() if isinstance(points, dict) else [points]
            if not points or any(not isinstance(p, list) or not p for p in per_task):
                raise ConfigError(
                    f"{where}: method {entry['name']!r} start_points = {points!r}; give a list "
                    "of tables, one per member to anchor, e.g. start_points = [{lr = 1e-3}], "
                    "or a table of such lists keyed by task name, or "
                    'start_points = ["defaults"] for the agent\'s defaults'
                )
            entry["start_points"] = copy.deepcopy(points)
        if "note" in m:
            entry["note"] = str(m["note"])
        methods.append(entry)
    names = [m["name"] for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: method names must be unique, got {names}")
    tasks = []
    for i, t in enumerate(tasks_raw):
        if "name" not in t and "env" not in t and "toy" not in t:
            raise ConfigError(f"{where}: task #{i} needs env = ... or toy = ...")
        if "env" in t and "toy" in t:
            raise ConfigError(f"{where}: task #{i} has both env and toy; give one of them")
        _check_score_range(t.get("score_range"), f"{where}: task #{i}")
        base_name = str(t.get("name") or t.get("env") or t.get("toy"))
        grid = t.get("grid") or {}
        if not isinstance(grid, dict):
            raise ConfigError(f"{where}: task {base_name!r} grid must be a table of lists")
        points: list[dict[str, Any]] = [{}]
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(
                    f"{where}: task {base_name!r} grid.{key} must be a non-empty list"
                )
            points = [{**p, key: v} for p in points for v in values]
        for p in points:
            entry = {k: v for k, v in t.items() if k != "grid"}
            entry.update(p)
            suffix = ",".join(f"{k}={v}" for k, v in p.items())
            entry["name"] = base_name + (f"@{suffix}" if suffix else "")
            entry["base_task"] = base_name
            entry["grid_point"] = p
            tasks.append(entry)
    _check_task_start_points(methods, tasks, where)
    tnames = [t["name"] for t in tasks]
    if len(set(tnames)) != len(tnames):
        raise ConfigError(f"{where}: task names must be unique, got {tnames}")
    # Each cell trains in the folder <task>/<method>/seed<k>: two names that give one folder
    # would share a cell and count its result twice.
    for kind, given in (("task", tnames), ("method", names)):
        folders: dict[str, str] = {}
        for n in given:
            f = _safe(n)
            if f in ("", ".", "..") or f in folders:
                raise ConfigError(
                    f"{where}: {kind} name {n!r} "
                    + (f"and {folders[f]!r} give the same folder {f!r}" if f in folders
                       else "cannot name a folder")
                    + f"; rename the {kind}"
                )  # fmt: skip
            folders[f] = n
    reference = raw.get("reference") or names[0]
    if reference not in names:
        raise ConfigError(f"{where}: reference = {reference!r} is not a method name {names}")
    score = raw.get("score", "final_test")
    if score not in SCORES:
        raise ConfigError(f"{where}: score = {score!r}; use one of {list(SCORES)}")
    defaults_outside = raw.get("defaults_outside", "")
    if not isinstance(defaults_outside, str) or (
        "defaults_outside" in raw and not defaults_outside
    ):
        raise ConfigError(
            f"{where}: defaults_outside = {defaults_outside!r}; give the reason the space does "
            "not hold the agent's defaults well inside its ranges, as text, or leave it out"
        )
    suite = Suite(
        name=name,
        description=str(raw.get("description", "")),
        seeds=seed_list,
        reference=reference,
        score=score,
        tasks=tasks,
        methods=methods,
        raw={"config": raw.get("config") or {}},
        path=path,
        variant=variant,
        notes=str(raw.get("notes", "")),
        defaults_outside=defaults_outside,
    )
    suite.cells()  # validates every cell's config now, before anything trains
    return suite


def _check_score_range(value: Any, where: str) -> None:
    if value is None:
        return
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not value[0] < value[1]
    ):
        raise ConfigError(
            f"{where}: score_range = {value!r}; give [low, high] with low < high, e.g. a random "
            "policy's return and the task's best, score_range = [0, 500]"
        )


def _make_cell(suite: Suite, task: dict, m: dict, seed: int) -> Cell:
    where = f"suite {suite.label}, task {task['name']!r}, method {m['name']!r}"
    body = {k: v for k, v in task.items() if k not in TASK_META_KEYS | {"base_task", "grid_point"}}
    if "toy" in task:
        return _toy_cell(suite, task, m, seed, where)
    cfg = _merge(suite.raw["config"], body)
    cfg.update(
        {
            "engine": "vector",
            "method": m["method"],
            "seed": int(seed),
            "name": f"{suite.name}/{task['name']}/{m['name']}/seed{seed}",
        }
    )
    for other in METHODS:
        cfg.pop(other, None)
    cfg[m["method"]] = dict(m["options"])
    if "tune" in m:
        cfg["space"] = _subset_space(cfg.get("space"), m["tune"], where)
    if "start_points" in m:
        cfg["start_points"] = _start_points(m, task)
    try:
        cfg = validate_config(cfg).to_dict()
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    return Cell(
        task["name"], m["name"], int(seed), "vector", cfg, row=_row(m), note=m.get("note", "")
    )


def _check_task_start_points(methods: list[dict], tasks: list[dict], where: str) -> None:
    """A row's start points given per task name one task each, for every task."""
    names = list(dict.fromkeys(t["base_task"] for t in tasks))
    for m in methods:
        points = m.get("start_points")
        if not isinstance(points, dict):
            continue
        unknown = sorted(set(points) - set(names))
        missing = [n for n in names if n not in points]
        if unknown or missing:
            raise ConfigError(
                f"{where}: method {m['name']!r} start_points "
                + (f"names {unknown[0]!r}, which is not a task" if unknown
                   else f"has no entry for task {missing[0]!r}")
                + f"; give one list per task, keyed by the task names {names}"
            )  # fmt: skip


def _start_points(m: dict, task: dict) -> list[dict]:
    points = m["start_points"]
    return copy.deepcopy(points[task["base_task"]] if isinstance(points, dict) else points)


def _row(m: dict) -> str:
    if m["method"] == "default":
        return "default"
    if "start_points" in m:
        return "anchored"
    return "subset" if "tune" in m else "equal"


def _subset_space(spec: dict | None, tune: list[str], where: str) -> dict:
    """The part of the task's space that a `tune` row searches (flat names, same ranges)."""
    space = Space.from_dict(spec or {})
    missing = [n for n in tune if n not in space.params]
    if missing:
        raise ConfigError(
            f"{where}: tune lists {missing[0]!r}, which is not in the task's space "
            f"{list(space.names)}"
        )
    if len(tune) == len(space.params):
        raise ConfigError(
            f"{where}: tune lists every hyperparameter of the space; remove it (the row is an "
            "equal one) or list only the ones this row searches"
        )
    full = space.to_dict()
    return {n: full[n] for n in space.names if n in tune}


def _toy_cell(suite: Suite, task: dict, m: dict, seed: int, where: str) -> Cell:
    from gpbt.engines.toys import TOYS

    toy = task["toy"]
    if toy not in TOYS:
        raise ConfigError(f"{where}: toy = {toy!r}; use one of {sorted(TOYS)}")
    unused = sorted(set(task) - TOY_TASK_KEYS)
    if unused:
        raise ConfigError(
            f"{where}: key {unused[0]!r} does nothing in a toy task (a toy sets its own budget "
            f"and space; toy_options = {{ steps = ..., interval = ... }}); a toy task takes "
            f"{sorted(TOY_TASK_KEYS - {'base_task', 'grid_point'})}"
        )
    population = task.get("population", suite.raw["config"].get("population", 8))
    if not isinstance(population, int) or isinstance(population, bool) or population < 1:
        raise ConfigError(f"{where}: population = {population!r}; give a whole number >= 1")
    opts = task.get("toy_options") or {}
    if not isinstance(opts, dict):
        raise ConfigError(f"{where}: toy_options = {opts!r}; give a table, e.g. {{ steps = 40 }}")
    opts = dict(opts)
    try:
        inst = TOYS[toy](**opts)
    except TypeError as err:
        raise ConfigError(f"{where}: toy_options: {err}") from None
    steps, interval = inst.steps, inst.interval
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (steps, interval)) or not (
        0 < interval <= steps
    ):
        raise ConfigError(
            f"{where}: toy_options give steps = {steps!r} and interval = {interval!r}; need "
            "whole numbers with 0 < interval <= steps"
        )
    space = inst.space.to_dict()
    if "tune" in m:
        space = _subset_space(space, m["tune"], where)
    points = _start_points(m, task) if "start_points" in m else None
    if points is not None:  # "defaults": the toy's own, as an agent's for a vector cell
        points = with_defaults(points, inst.defaults, Space.from_dict(space))
    cfg = {
        "engine": "toy",
        "toy": toy,
        "toy_options": opts,
        "population": int(population),
        "total_steps": inst.steps,
        "perturbation_interval": inst.interval,
        "method": m["method"],
        m["method"]: dict(m["options"]),
        "seed": int(seed),
        "mode": "max",
        "name": f"{suite.name}/{task['name']}/{m['name']}/seed{seed}",
        "space": space,
        **({"start_points": points} if points is not None else {}),
    }
    try:
        make_scheduler(
            m["method"],
            Space.from_dict(space),
            perturbation_interval=inst.interval,
            options=m["options"],
            start_points=cfg.get("start_points"),
        ).initial_population(population)  # also checks the start points fit the population
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    return Cell(task["name"], m["name"], int(seed), "toy", cfg, row=_row(m), note=m.get("note", ""))


def _fair_view(cfg: dict[str, Any], space: bool = True) -> str:
    """The part of a cell's config that must not depend on the method (an anchored row's
    `start_points` are its purpose, like a subset row's space)."""
    drop = set(METHODS) | {"method", "name", "start_points"} | (set() if space else {"space"})
    rest = {k: v for k, v in cfg.items() if k not in drop}
    return json.dumps(rest, sort_keys=True, default=str)


def check_fairness(cells: list[Cell]) -> None:
    """Every method of a (task, seed) gets the same config apart from its method table; a
    `tune` row's space is a part of the others' space, with the same ranges."""
    groups: dict[tuple[str, int], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.task, c.seed), []).append(c)
    for (task, seed), group in groups.items():
        ref = next((c for c in group if c.row != "subset"), group[0])
        for c in group:
            same = (
                _fair_view(c.config) == _fair_view(ref.config)
                if c.row != "subset" and ref.row != "subset"
                else _fair_view(c.config, space=False) == _fair_view(ref.config, space=False)
            )
            if not same:
                raise ConfigError(
                    f"unfair suite: task {task!r} seed {seed}: method {c.method!r} gets a "
                    f"different config than {ref.method!r}; only the method table may differ"
                )
            if c.row == "subset" and ref.row != "subset":
                mine = Space.from_dict(c.config["space"]).to_dict()
                full = Space.from_dict(ref.config["space"]).to_dict()
                if any(full.get(k) != v for k, v in mine.items()):
                    raise ConfigError(
                        f"unfair suite: task {task!r} seed {seed}: method {c.method!r} "
                        f"searches other ranges than {ref.method!r}; a tune row searches a "
                        "part of the task's space, unchanged"
                    )
