"""Live curves in TensorBoard and/or Weights & Biases, the same from every engine.

Every engine already writes two kinds of rows to the experiment store: reports (member, time,
score, metrics, config) and decision records (kind, member, donor, time, old and new config).
It hands the same rows, as it writes them, to a :class:`LiveLog`, which sends them on:

* per member: ``score``, ``hp/<name>`` (the numeric hyperparameters it trained with),
  ``metric/<name>`` (every numeric metric) at the report's time, and ``exploit/donor`` (whom it
  copied) at the time of each exploit;
* for the population: ``population/best_score`` and ``population/mean_score`` over each
  member's latest score (best is the max, or the min with ``mode = "min"``) after every batch
  of reports, ``population/exploits`` (so far) after every batch of decisions with one, both
  at the largest time seen so far (asynchronous engines report members at different times; the
  population's step never goes back); and a text line per exploit ("t=40000: member 3 copied
  member 5; lr 0.001 -> 0.002");
* at the end, the final greedy evaluation the run reports its score on (vector engine, state
  ``final_evaluation``, read from the store when the log closes): ``final/score`` per member
  (its test episodes' mean where the engine tested the members on fresh episodes, else its
  evaluation's mean) and, for the population, ``final/best_score`` (the member the run hands
  over, ``final/best_member``) and ``final/mean_score``, all at the run's last time; in W&B
  also the run's summary values, so the runs table shows the score the run prints.

The x axis is the engine's time (``time_attr``: env steps for the vector engine).

TensorBoard: one run (sub-folder) per member, ``member_03``, and one ``population``, under
``<experiment>/tensorboard`` or the folder given, so TensorBoard overlays the members on one
chart per tag. Written with tensorboardX: a small pure-Python writer (protobuf and numpy),
where ``torch.utils.tensorboard`` would need torch and the tensorboard package both.

W&B: one run per experiment, its config the experiment's config, keys ``score/member_03``,
``hp/lr/member_03``, ``metric/loss/member_03``, ``population/best_score``, all plotted against
the ``time`` step metric; the run's id is kept in the store, so ``gpbt resume`` continues the
same run. An exploits table is added when the run closes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["LiveLog", "open_live_log"]

TIME_KEY = "time"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "size", 2) == 1:
        try:
            return _number(item())
        except (TypeError, ValueError):
            return None
    return None


def _scalars(prefix: str, table: Mapping[str, Any] | None) -> dict[str, float]:
    out = {}
    for key, value in (table or {}).items():
        x = _number(value)
        if x is not None:
            out[f"{prefix}{key}"] = x
    return out


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class LiveLog:
    """Sends store rows to the sinks (TensorBoard, W&B) as the engine writes them.

    `sinks` is a list of open sinks, or a function that opens them: then they are opened by
    the first row that reaches them, so a run refused before it records anything (a config
    error found in the training process, a folder in use) leaves no W&B run and no
    TensorBoard folder behind."""

    def __init__(
        self,
        sinks: list[Any] | Callable[[], list[Any]],
        mode: str = "max",
        folder: Path | None = None,
    ):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self._open_sinks = sinks if callable(sinks) else None
        self._sinks: list[Any] | None = None if callable(sinks) else sinks
        self.mode = mode
        self.folder = folder  # the experiment's store: its final evaluation is logged at close
        self.latest: dict[int, float] = {}
        self.exploits = 0
        self.last_time: float | None = None
        self.exploit_rows: list[list[Any]] = []

    # ------------------------------------------------------------------ what engines call
    def log_reports(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Report rows as written to the store; then the population summary."""
        times = []
        for row in rows:
            member, time = int(row["member"]), float(row["time"])
            score = _number(row.get("score"))
            score = math.nan if score is None else score
            values = {"score": score}
            values.update(_scalars("hp/", row.get("config")))
            values.update(_scalars("metric/", row.get("metrics")))
            self._scalars(f"member_{member:02d}", time, values)
            self.latest[member] = score
            times.append(time)
        if times:
            self._population(max(times))
            self.flush()

    def log_decisions(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Decision records as written to the store; exploits are sent on, the rest are not."""
        latest = None
        for rec in records:
            if rec.get("kind") != "exploit" or rec.get("donor") is None:
                continue
            member, donor, time = int(rec["member"]), int(rec["donor"]), float(rec["time"])
            self.exploits += 1
            self._scalars(f"member_{member:02d}", time, {"exploit/donor": float(donor)})
            old, new = rec.get("old_config") or {}, rec.get("new_config") or {}
            changes = ", ".join(
                f"{k} {_short(old.get(k))} -> {_short(v)}"
                for k, v in new.items()
                if old.get(k) != v
            )
            line = f"t={time:g}: member {member} copied member {donor}" + (
                f"; {changes}" if changes else ""
            )
            self.exploit_rows.append([time, member, donor, changes])
            for sink in self.sinks:
                sink.text("population", time, "exploits", line)
            latest = time if latest is None else max(latest, time)
        if latest is not None:
            step = self._step(latest)
            self._scalars("population", step, {"population/exploits": float(self.exploits)})
            self.flush()

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def log_final(self, final: Mapping[str, Any]) -> None:
        """The final greedy evaluation (the store's state ``final_evaluation``), at the last
        time seen: per member ``final/score``, for the population the handed-over member's."""
        scores = [_number(x) for x in final.get("test_returns") or final.get("returns") or []]
        scores = [math.nan if x is None else x for x in scores]
        if not scores:
            return
        chosen = final.get("selected")
        finite = [(x, m) for m, x in enumerate(scores) if math.isfinite(x)]
        if chosen is None and finite:  # a run from before the members were tested afresh:
            # the best on its one evaluation, ties to the lowest member (as gpbt report picks)
            top = (max if self.mode == "max" else min)(x for x, _ in finite)
            chosen = next(m for x, m in finite if x == top)
        step = self.last_time if self.last_time is not None else 0.0
        for member, score in enumerate(scores):
            self._scalars(f"member_{member:02d}", step, {"final/score": score})
        values = {"final/mean_score": sum(x for x, _ in finite) / len(finite)} if finite else {}
        if chosen is not None:
            values.update({"final/best_score": scores[chosen], "final/best_member": chosen})
        self._scalars("population", step, values)
        for sink in self.sinks:
            sink.summary(values)
        self.flush()

    def open(self) -> LiveLog:
        """Open the sinks now rather than at the first row (an engine whose refusals all come
        before its run starts: W&B's run then starts before the engine's own loop does)."""
        self.sinks  # noqa: B018 - the property opens them
        return self

    @property
    def sinks(self) -> list[Any]:
        if self._sinks is None:
            assert self._open_sinks is not None
            self._sinks, self._open_sinks = self._open_sinks(), None
        return self._sinks

    def close(self) -> None:
        # A log never written to stays unopened, unless the store holds a final evaluation
        # to send (a resume of a run whose training had already ended): log_final opens it.
        if self._sinks != [] and self.folder is not None:
            final = _stored_final_evaluation(self.folder)
            if final is not None:
                self.log_final(final)
        for sink in self._sinks or []:
            sink.close(self.exploit_rows)
        self._sinks, self._open_sinks = [], None

    def __enter__(self) -> LiveLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _scalars(self, run: str, time: float, values: dict[str, float]) -> None:
        for sink in self.sinks:
            sink.scalars(run, time, values)

    def _population(self, time: float) -> None:
        finite = [s for s in self.latest.values() if math.isfinite(s)]
        if not finite:
            return
        best = max(finite) if self.mode == "max" else min(finite)
        values = {
            "population/best_score": best,
            "population/mean_score": sum(finite) / len(finite),
        }
        self._scalars("population", self._step(time), values)

    def _step(self, time: float) -> float:
        # Asynchronous engines report members at different times: the population's curves
        # never step back (TensorBoard would take a step back for a restart).
        self.last_time = time if self.last_time is None else max(self.last_time, time)
        return self.last_time


# ---------------------------------------------------------------------- sinks
class _TensorBoard:
    def __init__(self, logdir: Path):
        from tensorboardX import SummaryWriter

        self._cls = SummaryWriter
        self.logdir = Path(logdir)
        self.writers: dict[str, Any] = {}

    def _writer(self, run: str):
        if run not in self.writers:
            self.writers[run] = self._cls(str(self.logdir / run), flush_secs=10)
        return self.writers[run]

    def scalars(self, run: str, time: float, values: dict[str, float]) -> None:
        writer = self._writer(run)
        step = int(time) if float(time).is_integer() else time
        for key, value in values.items():
            writer.add_scalar(key, value, global_step=step)

    def text(self, run: str, time: float, tag: str, line: str) -> None:
        self._writer(run).add_text(tag, line, global_step=int(time))

    def summary(self, values: dict[str, float]) -> None:
        pass  # TensorBoard has no run summary: the final/ series say it

    def flush(self) -> None:
        for w in self.writers.values():
            w.flush()

    def close(self, exploit_rows: list[list[Any]]) -> None:
        for w in self.writers.values():
            w.close()
        self.writers = {}


class _Wandb:
    def __init__(self, options: Mapping[str, Any], folder: Path, config: Mapping, run_id: str):
        import wandb

        self._wandb = wandb
        settings = {k: options[k] for k in ("project", "entity", "group", "notes") if k in options}
        self.run = wandb.init(
            **settings,
            name=options.get("name") or folder.name,
            tags=list(options.get("tags", [])) or None,
            mode=options.get("mode"),
            dir=str(options.get("dir") or os.environ.get("WANDB_DIR") or folder),
            config=dict(config),
            id=run_id,
            resume="allow",
        )
        self.run.define_metric(TIME_KEY)
        self.run.define_metric("*", step_metric=TIME_KEY)

    def scalars(self, run: str, time: float, values: dict[str, float]) -> None:
        if run != "population":
            values = {f"{k}/{run}": v for k, v in values.items()}
        self.run.log({**values, TIME_KEY: time})

    def text(self, run: str, time: float, tag: str, line: str) -> None:
        pass  # exploits go to the table at close; live, each shows as exploit/donor

    def summary(self, values: dict[str, float]) -> None:
        self.run.summary.update(values)

    def flush(self) -> None:
        pass  # wandb streams every log call itself

    def close(self, exploit_rows: list[list[Any]]) -> None:
        if exploit_rows:
            table = self._wandb.Table(
                columns=["time", "member", "donor", "changes"], data=exploit_rows
            )
            self.run.log({"exploits": table})
        self.run.finish()


def open_live_log(
    options: Mapping[str, Any] | None,
    folder: str | os.PathLike,
    *,
    mode: str = "max",
    config: Mapping[str, Any] | None = None,
) -> LiveLog | None:
    """The live log a config's ``[logging]`` table asks for (None when it asks for nothing).

    ``options`` is the validated table: ``tensorboard`` (true or a folder) and ``wandb`` (true
    or a table of ``wandb.init`` settings: project, entity, name, group, tags, notes, mode,
    dir). ``folder`` is the experiment folder. Nothing is opened until the first row is
    logged (see :class:`LiveLog`).
    """
    options = dict(options or {})
    folder = Path(folder)
    tb, wb = options.get("tensorboard", False), options.get("wandb", False)
    if not (tb or wb):
        return None

    def open_sinks() -> list[Any]:
        sinks: list[Any] = []
        if tb:
            sinks.append(_TensorBoard(folder / "tensorboard" if tb is True else Path(tb)))
        if wb:
            wandb_id = _wandb_id(folder)
            sinks.append(_Wandb({} if wb is True else wb, folder, config or {}, wandb_id))
        return sinks

    return LiveLog(open_sinks, mode, folder)


def _stored_final_evaluation(folder: Path) -> dict | None:
    """The experiment's final evaluation, if its store has one (never creating a store)."""
    from gpbt.store import DB_NAME, ExperimentStore

    if not (folder / DB_NAME).exists():
        return None
    with ExperimentStore(folder) as store:
        return store.get_state("final_evaluation")


def _wandb_id(folder: Path) -> str:
    """The experiment's W&B run id, made once and kept in its store (a resume reuses it)."""
    import secrets

    from gpbt.store import ExperimentStore

    folder.mkdir(parents=True, exist_ok=True)
    with ExperimentStore(folder) as store:
        run_id = store.get_state("wandb_run_id")
        if run_id is None:
            run_id = secrets.token_hex(4)
            store.set_state("wandb_run_id", run_id)
    return str(run_id)


# [logging]: where live curves go (gpbt.live_log sends them). key -> (types, what to write)
LOGGING_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "tensorboard": ((bool, str), "true (into <experiment>/tensorboard) or a folder"),
    "wandb": ((bool, dict), 'true or a table of run settings, e.g. { project = "gpbt" }'),
}
WANDB_KEYS: dict[str, tuple[type, ...]] = {
    "project": (str,),
    "entity": (str,),
    "name": (str,),
    "group": (str,),
    "notes": (str,),
    "tags": (list,),
    "mode": (str,),
    "dir": (str,),
}
WANDB_MODES = ("online", "offline", "disabled")
LOGGING_EXTRAS = {"tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb", "wandb")}


def check_logging(table: Any) -> None:
    """The [logging] table, or one ConfigError naming the key and the fix (also when the
    extra that a turned-on logger needs is not installed)."""
    import importlib.util

    from gpbt.errors import ConfigError

    if not isinstance(table, dict):
        raise ConfigError("'logging' must be a table, e.g. [logging] with tensorboard = true")
    for key, value in table.items():
        if key not in LOGGING_KEYS:
            raise ConfigError(
                f"[logging] {key!r} is not a logging option; use "
                + " and/or ".join(f"{k} = {what}" for k, (_, what) in LOGGING_KEYS.items())
            )
        types, what = LOGGING_KEYS[key]
        if not isinstance(value, types) or value == "":
            raise ConfigError(f"[logging] {key} = {value!r}: use {what}")
    wandb = table.get("wandb")
    if isinstance(wandb, dict):
        for key, value in wandb.items():
            if key not in WANDB_KEYS:
                raise ConfigError(
                    f"[logging.wandb] {key!r} is not a W&B run setting; use {sorted(WANDB_KEYS)}"
                )
            if not isinstance(value, WANDB_KEYS[key]) or (
                key == "tags" and not all(isinstance(t, str) for t in value)
            ):
                kind = "a list of strings" if key == "tags" else "a string"
                raise ConfigError(f"[logging.wandb] {key} = {value!r}: must be {kind}")
        if wandb.get("mode", "online") not in WANDB_MODES:
            raise ConfigError(
                f"[logging.wandb] mode = {wandb['mode']!r}: use one of {list(WANDB_MODES)} "
                "(offline writes the run to disk for `wandb sync` later)"
            )
    for key, (module, extra) in LOGGING_EXTRAS.items():
        if table.get(key) not in (None, False) and importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"[logging] {key} needs the {module} package, which is not installed: "
                f"pip install 'gpbt[{extra}]' (or turn it off with {key} = false)"
            )
