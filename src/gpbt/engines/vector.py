"""The vector engine: a whole population in one jitted, vmapped JAX program, in lockstep.

Each generation: train every member up to the interval's end in its own env-step count (one
device call; whole updates overshoot, and the overshoot is carried into the next interval), read
the scores, ask the scheduler (`on_generation`), apply exploits as ONE gather along the
population axis (weights, optimiser state, normaliser statistics, env state; a copy gets a random
stream of its own), set the new hyperparameter arrays, continue. Hyperparameters are traced
arrays, so nothing recompiles. A copy reports its donor's score until it finishes an episode of
its own. How that program is laid out on the machine (lockstep or member by member, over every
core or device) is decided once per run from the `execution` and `devices` keys
(`gpbt.rl.execution`).

Crash safety: reports and decisions reach the experiment store as they happen; every
`checkpoint_interval` the population state, the scheduler state and the configs are written
atomically. Resuming truncates the store back to the last checkpoint and re-runs from there;
the run is deterministic, so the re-run writes exactly the rows it replaces.

The training process is supervised: `run_vector` starts it as a child process and renders the
live view from its events. A generation that makes no progress for `watchdog_seconds` (a rare
JAX hang at 0% CPU has been seen on this kind of machine) gets the child killed and restarted
from the last checkpoint instead of hanging the run.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import queue
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from gpbt.config import ConfigError, build_scheduler
from gpbt.core.decisions import Exploit
from gpbt.space import Choice, Space
from gpbt.store import ExperimentStore

CHECKPOINT_DIR = "checkpoints"
KEEP_CHECKPOINTS = 2
MAX_WATCHDOG_RESTARTS = 3
STARTUP_ALLOWANCE_S = 600


def _enable_compilation_cache() -> None:
    """Reuse compiled programs across runs (the PPO program takes tens of seconds to compile
    on CPU). Off with GPBT_JAX_CACHE=0; a user-set JAX cache dir wins."""
    import jax

    if os.environ.get("GPBT_JAX_CACHE", "1") == "0":
        return
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpbt" / "jax"
        jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def check_space_against_agent(space: Space, agent, fixed: dict[str, Any]) -> None:
    """Every tuned or fixed hyperparameter must be one the agent has, inside its bounds."""
    names = set(agent.hyperparameter_names)
    bounds = agent.hyperparameter_bounds()
    for source, keys in (("[space]", space.names), ("[hyperparameters]", fixed)):
        for key in keys:
            if key not in names:
                raise ConfigError(
                    f"{source} '{key}' is not a hyperparameter of this agent; "
                    f"known: {sorted(names)}"
                )
    for name, p in space.params.items():
        lo, hi = bounds[name]
        values = p.values if isinstance(p, Choice) else (p.low, p.high)
        for v in values:
            if not isinstance(v, int | float) or not lo <= v <= hi:
                raise ConfigError(
                    f"[space] '{name}': {v!r} is outside what the agent accepts "
                    f"[{lo:g}, {hi:g}] with these agent_options; narrow the "
                    "space or enlarge the agent's static sizes"
                )
    overlap = sorted(set(fixed) & set(space.names))
    if overlap:
        raise ConfigError(
            f"[hyperparameters] '{overlap[0]}' is also in [space]; a value is "
            "either tuned or fixed, remove it from one table"
        )
    try:
        agent.hyperparameters_to_arrays([fixed])
    except ValueError as err:
        raise ConfigError(f"[hyperparameters] {err}") from None


def preflight(cfg: dict[str, Any]):
    """Build the agent and check the space against it: every config error surfaces here, in
    the caller's process, before a folder is made or anything trains."""
    from gpbt.rl.agents import make_agent
    from gpbt.rl.execution import configure_host_devices

    # Before JAX starts its backend in this process: on CPU, one device per core (or the
    # configured count), so training can be spread over every core.
    configure_host_devices(cfg.get("devices", 0))
    try:
        agent = make_agent(cfg["agent"], cfg["env"], cfg["agent_options"])
    except (ValueError, TypeError, ImportError) as err:
        raise ConfigError(str(err)) from None
    check_space_against_agent(Space.from_dict(cfg["space"]), agent, dict(cfg["hyperparameters"]))
    return agent


class VectorRun:
    """One experiment folder driven by the vector engine (used inside the child process)."""

    def __init__(self, cfg: dict[str, Any], folder: str | Path, emit=None):
        self.cfg = cfg
        self.folder = Path(folder)
        self.emit = emit or (lambda event: None)
        self.space = Space.from_dict(cfg["space"])
        self.agent = preflight(cfg)
        self.fixed = dict(cfg["hyperparameters"])
        self.scheduler = build_scheduler(cfg, self.space)
        self.population = cfg["population"]
        self.interval = int(cfg["perturbation_interval"])
        self.total = int(cfg["total_steps"])
        self.generations = math.ceil(self.total / self.interval)
        every = max(1, round(cfg["checkpoint_interval"] / self.interval))
        self.checkpoint_every = every
        self.store = ExperimentStore(self.folder)

    # ------------------------------------------------------------------ state on disk
    def _hp(self):
        return self.agent.hyperparameters_to_arrays([{**self.fixed, **c} for c in self.configs])

    def _save_checkpoint(self, generation: int) -> None:
        import jax

        leaves = jax.tree_util.tree_leaves(self.state)
        path = self.folder / CHECKPOINT_DIR / f"gen{generation:06d}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        meta = {
            "generation": generation,
            "configs": self.configs,
            "scheduler": self.scheduler.state_dict(),
            "scores": self.last_scores,
            "eval_key": int(self.eval_key_counter),
        }
        arrays = {f"leaf{i}": np.asarray(x) for i, x in enumerate(leaves)}
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self.store.add_checkpoint(
            generation * self.interval,
            str(path.relative_to(self.folder)),
            members=list(range(self.population)),
            meta={"generation": generation},
        )
        # Keep the newest few: the lockstep engine only ever resumes from the latest one.
        for old in sorted(path.parent.glob("gen*.npz"))[:-KEEP_CHECKPOINTS]:
            old.unlink(missing_ok=True)

    def _load_checkpoint(self, record: dict) -> int:
        import jax

        path = self.folder / record["path"]
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            template = self.agent.init(self._key(), self.population)
            treedef = jax.tree_util.tree_structure(template)
            n = treedef.num_leaves
            leaves = [jax.numpy.asarray(data[f"leaf{i}"]) for i in range(n)]
        self.state = jax.tree_util.tree_unflatten(treedef, leaves)
        self.configs = meta["configs"]
        self.scheduler.load_state_dict(meta["scheduler"])
        self.last_scores = {int(k): v for k, v in meta["scores"].items()}
        self.eval_key_counter = meta["eval_key"]
        return int(meta["generation"])

    def _key(self):
        import jax

        # Weights and env seeds come from the experiment seed alone, never from the method:
        # every method with the same seed starts from the same population.
        return jax.random.key(self.cfg["seed"])

    # ------------------------------------------------------------------ the loop
    def start(self, resume: bool) -> int:
        """Initialise (or restore) and return the first generation still to train."""
        stored = self.store.read_config()
        if resume and stored is None:
            raise ConfigError(f"{self.folder} has no experiment to resume")
        self.store.write_config(self.cfg)
        latest = self.store.latest_checkpoint() if resume else None
        if latest is not None:
            generation = self._load_checkpoint(latest)
            removed = self.store.truncate_after(generation * self.interval)
            self.emit({"type": "resumed", "generation": generation, "removed": removed})
            return generation
        # A fresh start (or a resume before the first checkpoint): begin from scratch, and
        # drop anything a killed first attempt wrote.
        self.store.truncate_after(-1)
        self.configs = self.scheduler.initial_population(self.population)
        self.state = self.agent.init(self._key(), self.population)
        self.last_scores = {}
        self.eval_key_counter = 0
        return 0

    def run(self, resume: bool = False) -> dict[str, Any]:
        import jax

        generation = self.start(resume)
        self._set_execution()
        hp = self._hp()
        compiles_at_start = self.agent.compile_count
        for g in range(generation + 1, self.generations + 1):
            t0 = time.perf_counter()
            t_now = g * self.interval if g < self.generations else self.total
            # Each member trains up to t_now in its own total: a member whose whole updates
            # overshot the last interval's end trains that much less in this one, so over a
            # run every member gets the same env steps to within one of its batches.
            done = np.asarray(jax.device_get(self.state.total_env_steps), np.int64)
            steps = np.maximum(t_now - done, 0)
            if os.environ.get("GPBT_TEST_HANG_AT") == str(g):
                marker = self.folder / "hang-once"
                if not marker.exists():
                    marker.write_text("hung")
                    time.sleep(3600)  # simulates a stuck XLA call for the watchdog test
            self.state, metrics = self.agent.train(self.state, hp, steps)
            metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
            train_s = time.perf_counter() - t0
            scores = self._scores(metrics)
            eval_returns = None
            if self.cfg["eval_episodes"] > 0:
                eval_returns = np.asarray(
                    self.agent.evaluate(
                        self.state, jax.random.key(10_000 + g), self.cfg["eval_episodes"]
                    )
                )
                if self.cfg["metric"] == "eval_return":
                    scores = {i: float(eval_returns[i]) for i in range(self.population)}
            t1 = time.perf_counter()
            rows = []
            for i in range(self.population):
                m = {k: float(v[i]) for k, v in metrics.items()}
                m["env_steps_total"] = float(np.asarray(self.state.total_env_steps)[i])
                if eval_returns is not None:
                    m["eval_return"] = float(eval_returns[i])
                rows.append(
                    {
                        "member": i,
                        "time": t_now,
                        "score": scores[i],
                        "metrics": m,
                        "config": self.configs[i],
                    }
                )
            self.store.add_reports(rows)
            events = {i: "" for i in range(self.population)}
            n_exploits = 0
            if g < self.generations:
                decisions = self.scheduler.on_generation(t_now, scores)
                self.store.add_decisions(
                    [d.record.to_dict() for d in decisions.values() if d.record is not None]
                )
                index = np.arange(self.population)
                for i, d in decisions.items():
                    if isinstance(d, Exploit):
                        index[i] = d.donor
                        self.configs[i] = d.config
                        events[i] = f"copied {d.donor}"
                        n_exploits += 1
                # A copy carries its donor's weights: until it finishes an episode of its own
                # it reports the donor's score, not the one it lost with (which would tell PB2
                # that the new config made the score fall).
                self.last_scores.update(
                    {i: scores[int(j)] for i, j in enumerate(index) if j != i}
                )
                if n_exploits:
                    self.state = self.agent.gather(self.state, index)
                    hp = self._hp()
            manage_s = time.perf_counter() - t1
            if g % self.checkpoint_every == 0 or g == self.generations:
                self._save_checkpoint(g)
            self.emit(
                {
                    "type": "generation",
                    "generation": g,
                    "generations": self.generations,
                    "time": t_now,
                    "total": self.total,
                    "train_s": train_s,
                    "manage_s": manage_s,
                    "exploits": n_exploits,
                    "members": [
                        {
                            "member": i,
                            "score": scores[i],
                            "config": self.configs[i],
                            "event": events[i],
                        }
                        for i in range(self.population)
                    ],
                }
            )
        summary = self.finish()
        summary["compilations_during_run"] = self.agent.compile_count - compiles_at_start
        summary["execution"] = self.execution
        return summary

    def _set_execution(self) -> None:
        """Decide once per run how the population trains (gpbt.rl.execution): a run whose
        space tunes a structural hyperparameter trains member by member on CPU, so that no
        member waits for another; otherwise in lockstep. Deciding from the space, not from
        the current configs, keeps one program for the whole run."""
        import jax

        from gpbt.rl.execution import resolve_strategy

        tuned = set(self.space.names) & set(self.agent.structural_hyperparameters)
        strategy = resolve_strategy(
            self.cfg.get("execution", "auto"),
            structural_varies=bool(tuned),
            platform=jax.default_backend(),
        )
        self.agent.set_execution(strategy, self.cfg.get("devices", 0))
        _, devices = self.agent.execution_plan(self._hp())
        self.execution = {"strategy": strategy, "devices": devices}

    def _scores(self, metrics: dict[str, np.ndarray]) -> dict[int, float]:
        """Mean return of the episodes finished this generation; a member that finished none
        keeps its previous score (long episodes can span an interval). NaN stays NaN."""
        out = {}
        for i in range(self.population):
            if metrics["episodes"][i] > 0:
                out[i] = float(metrics["episode_return"][i])
            else:
                out[i] = float(self.last_scores.get(i, math.nan))
        self.last_scores = dict(out)
        return out

    def finish(self) -> dict[str, Any]:
        import jax

        n = self.cfg["final_eval_episodes"]
        final = np.asarray(self.agent.evaluate(self.state, jax.random.key(99_991), n))
        self.store.set_state(
            "final_evaluation", {"episodes": n, "returns": [float(x) for x in final]}
        )
        best = int(np.nanargmax(final)) if np.isfinite(final).any() else 0
        decisions = self.store.decisions()
        exploits = int((decisions["kind"] == "exploit").sum()) if len(decisions) else 0
        summary = {
            "best_member": best,
            "best_final_eval_return": float(final[best]),
            "population_mean_final_eval_return": float(np.nanmean(final)),
            "final_eval_episodes": n,
            "exploits": exploits,
            "best_config": self.configs[best],
        }
        self.store.set_state("summary", summary)
        return summary


# ---------------------------------------------------------------------- the supervisor
def _child(cfg: dict, folder: str, resume: bool, events: mp.Queue) -> None:
    def emit(event: dict) -> None:
        events.put(event)

    try:
        _enable_compilation_cache()
        run = VectorRun(cfg, folder, emit)
        summary = run.run(resume=resume)
        emit({"type": "done", "summary": summary})
    except ConfigError as err:
        emit({"type": "error", "kind": "config", "message": str(err)})
    except BaseException as err:  # the parent must hear about every failure
        emit(
            {
                "type": "error",
                "kind": type(err).__name__,
                "message": str(err),
                "traceback": traceback.format_exc(),
            }
        )


def run_vector(
    cfg: dict[str, Any],
    folder: str | Path,
    *,
    resume: bool = False,
    progress: bool | None = None,
    supervise: bool = True,
) -> dict[str, Any]:
    """Run (or resume) an experiment; returns the summary.

    `supervise=False` runs in this process (no watchdog); tests and notebooks may prefer it.
    """
    preflight(cfg)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not supervise:
        _enable_compilation_cache()
        return VectorRun(cfg, folder).run(resume=resume)
    view = _LiveView(cfg, enabled=progress if progress is not None else True)
    ctx = mp.get_context("spawn")  # never fork a process that may have initialised JAX
    restarts = 0
    with view:
        while True:
            events = ctx.Queue()
            proc = ctx.Process(target=_child, args=(cfg, str(folder), resume, events), daemon=True)
            proc.start()
            last = time.monotonic()
            # Until the child reports its first generation it is importing and compiling,
            # which takes far longer than a generation on a loaded machine; only after that
            # does the watchdog hold it to `watchdog_seconds`.
            limit = cfg["watchdog_seconds"] + STARTUP_ALLOWANCE_S
            outcome = None
            while outcome is None:
                try:
                    event = events.get(timeout=1.0)
                except queue.Empty:
                    if not proc.is_alive():
                        outcome = {
                            "type": "error",
                            "kind": "crash",
                            "message": f"the training process died (exit code {proc.exitcode})",
                        }
                    elif time.monotonic() - last > limit:
                        outcome = {"type": "hang"}
                    continue
                last = time.monotonic()
                if event["type"] == "generation":
                    limit = cfg["watchdog_seconds"]
                if event["type"] in ("done", "error"):
                    outcome = event
                else:
                    view.update(event)
            if outcome["type"] == "done":
                proc.join(timeout=30)
                return outcome["summary"]
            proc.kill()
            proc.join()
            if outcome["type"] == "error" and outcome["kind"] == "config":
                raise ConfigError(outcome["message"])
            restarts += 1
            reason = "no progress" if outcome["type"] == "hang" else outcome["message"]
            with ExperimentStore(folder) as store:
                log = store.get_state("restarts") or {"events": []}
                log["events"].append({"reason": reason, "at": time.time()})
                store.set_state("restarts", log)
            if restarts > MAX_WATCHDOG_RESTARTS:
                detail = outcome.get("traceback", "")
                raise RuntimeError(
                    f"training failed {restarts} times; last: {reason}\n{detail}"
                    f"\neverything recorded is kept in {folder}"
                )
            view.note(f"restarting from the last checkpoint ({reason})")
            resume = True


class _LiveView:
    """Progress bar with ETA and a table of members, from the child's events."""

    def __init__(self, cfg: dict, enabled: bool):
        self.cfg, self.enabled = cfg, enabled
        self.live = None
        self.last: dict | None = None
        self.notes: list[str] = []

    def __enter__(self):
        if not self.enabled:
            return self
        from rich.console import Console

        if not Console().is_terminal:
            # A log file or CI: one plain line per generation instead of a redrawn screen.
            self.plain = True
            return self
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
            TimeRemainingColumn(),
        )
        self.task = self.progress.add_task(
            f"{self.cfg['method']} on {self.cfg.get('env')}", total=self.cfg["total_steps"]
        )
        self.live = Live(self._render(), refresh_per_second=4, transient=False)
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)

    plain = False

    def note(self, text: str) -> None:
        self.notes.append(text)
        if self.plain:
            print(text, flush=True)
        if self.live is not None:
            self.live.update(self._render())

    def update(self, event: dict) -> None:
        if event["type"] == "generation":
            self.last = event
        elif event["type"] == "resumed":
            self.notes.append(f"resumed at generation {event['generation']}")
        if self.plain and event["type"] == "generation":
            best = max(event["members"], key=lambda m: _finite(m["score"]))
            print(f"generation {event['generation']}/{event['generations']}  "
                  f"t={event['time']:,}  best member {best['member']} score "
                  f"{best['score']:.2f}  exploits {event['exploits']}  "
                  f"train {event['train_s']:.1f}s", flush=True)
        if self.live is not None:
            if self.last:
                self.progress.update(self.task, completed=self.last["time"])
            self.live.update(self._render())

    def _render(self):
        from rich.console import Group
        from rich.table import Table

        table = Table(expand=False)
        for col in ("member", "score", "hyperparameters", "last event"):
            table.add_column(col)
        if self.last:
            for m in self.last["members"]:
                hps = ", ".join(f"{k}={_short(v)}" for k, v in m["config"].items())
                table.add_row(str(m["member"]), f"{m['score']:.2f}", hps, m["event"])
            sps = (
                self.cfg["population"]
                * (self.last["time"] / max(self.last["generation"], 1))
                / max(self.last["train_s"], 1e-9)
            )
            caption = (
                f"generation {self.last['generation']}/{self.last['generations']}  "
                f"{sps:,.0f} env-steps/s  exploits this interval: "
                f"{self.last['exploits']}"
            )
            table.caption = caption
        parts = [self.progress, table] + [f"[yellow]{n}" for n in self.notes[-3:]]
        return Group(*parts)


def _finite(x: float) -> float:
    return x if isinstance(x, float) and math.isfinite(x) else -math.inf


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
