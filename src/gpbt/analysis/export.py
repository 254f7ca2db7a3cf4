"""`gpbt export FOLDER`: the tuned agent out of a run, and the schedule that made it.

Writes into `OUT` (default `FOLDER/export/`):

- `schedule.json`: the final best member, its lineage and the hyperparameters its weights
  trained with, one entry per interval (see `gpbt.analysis.lineage`); all three engines.
- the best member's final weights in the agent's own format:
  vector engine: `member.npz` (`gpbt.rl.member` format), loaded by `load_member(OUT)` into a
  `JaxMember` with `.act(obs)` and `.evaluate()`;
  local engine: `checkpoint/`, a copy of the trainable's own checkpoint folder, loaded by
  `load_member(OUT)` into the trainable (`setup(config)` then `restore(dir)`);
  Ray: the best trial's checkpoint path, named in `export.json` (Ray keeps the files).
- `export.json`: what was exported, from where, and how to load it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from gpbt.analysis.lineage import ExperimentError, best_schedule, require_reports
from gpbt.engines import engine_of
from gpbt.errors import FolderError
from gpbt.store import load

__all__ = ["export", "load_member", "run_member"]

MANIFEST = "export.json"
SCHEDULE = "schedule.json"


def run_member(exp, member: int):
    """A vector-engine run's member, from the run's latest checkpoint, as a `JaxMember`
    (meta `time` says when the checkpoint was taken)."""
    from gpbt.engines.vector import read_checkpoint
    from gpbt.rl.member import JaxMember

    cfg = exp.config or {}
    latest = exp.latest_checkpoint
    if latest is None:
        raise ExperimentError(
            f"{exp.folder} has no checkpoint yet, so no weights to export; the vector engine "
            "writes one every checkpoint_interval (gpbt resume FOLDER continues the run)"
        )
    meta, leaves = read_checkpoint(exp.folder / latest["path"])
    if not 0 <= member < len(meta["configs"]):
        raise ExperimentError(f"{exp.folder}: member {member} is not in the checkpoint")
    tuned = meta["configs"][member]
    return JaxMember.from_leaves(
        {
            "agent": cfg["agent"],
            "env": cfg["env"],
            "agent_options": cfg.get("agent_options") or {},
            "config": tuned,
            "hyperparameters": {**(cfg.get("hyperparameters") or {}), **tuned},
            "source": str(exp.folder),
            "member": member,
            "time": latest["time"],
        },
        [x[member : member + 1] for x in leaves],
    )


def _json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, default=str, allow_nan=False) + "\n")


def _finite(doc: Any) -> Any:
    """JSON has no NaN: a NaN or infinite score becomes null."""
    if isinstance(doc, float) and not math.isfinite(doc):
        return None
    if isinstance(doc, dict):
        return {k: _finite(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_finite(v) for v in doc]
    return doc


def export(folder: str | os.PathLike, out: str | os.PathLike | None = None) -> dict[str, Any]:
    """Export the best member of the run in `folder`; returns the manifest (also written to
    `OUT/export.json`)."""
    folder = Path(folder)
    exp = load(folder)
    require_reports(exp)
    out = Path(out) if out is not None else folder / "export"
    if out.exists() and not out.is_dir():
        raise FolderError(f"--out {out} is a file; give a folder to export into")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _export(exp, folder, out)
    except ExperimentError:
        if created:  # nothing was exported: leave no half-written folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise


def _export(exp, folder: Path, out: Path) -> dict[str, Any]:
    schedule = _finite(best_schedule(exp))
    _json(out / SCHEDULE, schedule)
    engine = (exp.config or {}).get("engine")
    member = schedule["best_member"]
    manifest: dict[str, Any] = {
        "engine": engine,
        "source": str(folder),
        "member": member,
        "score": schedule["best_score"],
        "score_basis": schedule["score_basis"],
        "schedule": SCHEDULE,
    }
    found = engine_of(exp.config)
    if found is not None and found.supports("export"):
        manifest.update(WEIGHTS[found.weights](exp, member, out, schedule))
    else:
        manifest["weights"] = None
        manifest["note"] = (
            f"engine {engine!r}: only the schedule is exported (weights are exported from "
            "vector, local and Ray runs)"
        )
    if manifest["score"] is None:
        unscored = (
            f"no member has a finite score (every report was NaN or missing), so member "
            f"{member} is exported as found, not as the best"
        )
        manifest["note"] = f"{unscored}; {manifest['note']}" if "note" in manifest else unscored
    _json(out / MANIFEST, _finite(manifest))
    return manifest


def _export_jax(exp, member: int, out: Path, schedule: dict[str, Any]) -> dict[str, Any]:
    jm = run_member(exp, member)
    jm.save(out / "member.npz")
    last = max(e["end"] for e in schedule["entries"])
    info: dict[str, Any] = dict(
        weights="member.npz",
        time=jm.meta["time"],
        agent=jm.meta["agent"],
        env=jm.meta["env"],
        config=jm.tuned,
        hyperparameters=jm.config,
        load="from gpbt.analysis.export import load_member; m = load_member(OUT); m.act(obs)",
    )
    if jm.meta["time"] < last:
        info["note"] = (
            f"the latest checkpoint is at t={jm.meta['time']}, the last report at t={last}: "
            "the run did not finish; these are the weights at the checkpoint"
        )
    return info


def _export_local(exp, member: int, out: Path, schedule: dict[str, Any]) -> dict[str, Any]:
    from gpbt.engines.local import STATE_KEY

    state = exp.state(STATE_KEY) or {}
    st = (state.get("members") or {}).get(str(member)) or {}
    ckpt = st.get("ckpt")
    if not ckpt or not (exp.folder / ckpt).is_dir():
        raise ExperimentError(
            f"{exp.folder}: member {member} has no checkpoint on disk (it failed, or the run "
            "never reached its first step); nothing to export"
        )
    target = out / "checkpoint"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(exp.folder / ckpt, target)
    cfg = exp.config or {}
    return {
        "weights": "checkpoint",
        "time": st.get("time"),
        "trainable": cfg.get("trainable"),
        "trainable_options": cfg.get("trainable_options") or {},
        "config": st.get("config"),
        "load": (
            "from gpbt.analysis.export import load_member; t = load_member(OUT)  # setup + restore"
        ),
    }


def _export_ray(exp, member: int, out: Path, schedule: dict[str, Any]) -> dict[str, Any]:
    trials = exp.state("ray_trials") or {}
    trial_id = trials.get(str(member))
    path = _ray_checkpoint(exp.folder, trial_id) if trial_id else None
    info: dict[str, Any] = {"trial_id": trial_id, "weights": None, "checkpoint_path": None}
    if path is None:
        info["note"] = (
            "no checkpoint of the best trial was found under the experiment folder (Ray may "
            "keep them elsewhere, or num_to_keep removed them); the schedule is exported"
        )
    else:
        info["checkpoint_path"] = str(path)
        info["load"] = (
            "ray.tune.Checkpoint.from_directory(checkpoint_path), or RLlib's from_checkpoint"
        )
    return info


# An engine's `weights` format -> how its best member's weights are exported:
# (exp, member, out, schedule) -> the manifest's entries
WEIGHTS = {
    "jax-member": _export_jax,  # gpbt.rl.member's member.npz, from the run's checkpoint
    "trainable": _export_local,  # a copy of the trainable's own checkpoint folder
    "tune-checkpoint": _export_ray,  # the path of the best trial's Ray Tune checkpoint
}


def _ray_checkpoint(folder: Path, trial_id: str) -> Path | None:
    """The newest `checkpoint_*` folder of the trial whose directory names `trial_id`."""
    found = []
    for trial_dir in folder.rglob(f"*{trial_id}*"):
        if trial_dir.is_dir():
            found += [p for p in trial_dir.glob("checkpoint_*") if p.is_dir()]
    return max(found, key=lambda p: p.name) if found else None


def load_member(path: str | os.PathLike):
    """Load what `gpbt export` wrote: a `JaxMember` (vector engine) or the restored trainable
    (local engine). `path` is the export folder (or a `member.npz` directly)."""
    path = Path(path)
    if path.suffix == ".npz":
        from gpbt.rl.member import JaxMember

        return JaxMember.load(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{path} has no {MANIFEST}; pass the folder `gpbt export` wrote (default FOLDER/export)"
        )
    manifest = json.loads(manifest_path.read_text())
    found = engine_of({"engine": manifest["engine"]})
    weights = found.weights if found is not None else None
    if weights == "jax-member":
        from gpbt.rl.member import JaxMember

        return JaxMember.load(path / manifest["weights"])
    if weights == "trainable":
        from gpbt.core.space import Space
        from gpbt.engines.trainable import load_trainable

        cls = load_trainable(manifest["trainable"])
        config = Space.nest(manifest["config"] or {}, into=manifest["trainable_options"])
        obj = cls()
        obj.config = config
        obj.member = manifest["member"]
        obj.setup(config)
        obj.restore(str(path / manifest["weights"]))
        return obj
    raise ValueError(
        f"{path}: an export of a {manifest['engine']!r} run holds no loadable weights here; "
        f"see {MANIFEST} (Ray: checkpoint_path)"
    )
