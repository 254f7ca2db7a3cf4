"""One member of a built-in JAX agent, out of its population: save it, load it, act with it.

The vector engine trains a population as one stacked pytree; a `JaxMember` is one member's slice
of it (parameters, optimiser and normaliser statistics, its environments' state) kept as a
population of one, so the agent's own jitted `act` and `evaluate` run it unchanged.

File format (`member.npz`, read with `numpy.load`): `meta` is UTF-8 JSON as a uint8 array (agent,
env, agent_options, the hyperparameters it trained with last, where it came from, and the path
of every leaf); `leaf0`, `leaf1`, ... are the leaves of the member's state in the order of
`jax.tree_util.tree_leaves`, without the population axis.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "gpbt-jax-member"
VERSION = 1


def _template(agent):
    """The pytree structure and leaf paths of a one-member state, traced, never computed."""
    import jax

    shapes = jax.eval_shape(lambda key: agent.init(key, 1), jax.random.key(0))
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]]
    return jax.tree_util.tree_structure(shapes), paths


def _plain(value: Any) -> Any:
    """A numpy or JAX scalar as the Python number it holds (JSON and printing read it)."""
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "size", 2) == 1 else value


class JaxMember:
    """`agent` (PPO or IMPALA), `state` (its population of one), `meta` (see the module doc)."""

    def __init__(self, agent, state, meta: dict[str, Any]):
        self.agent, self.state, self.meta = agent, state, meta

    @property
    def env(self):
        return self.agent.env

    @property
    def tuned(self) -> dict[str, Any]:
        """The tuned hyperparameters it trained with last (its run's [space])."""
        return dict(self.meta.get("config") or {})

    @property
    def config(self) -> dict[str, Any]:
        """Every hyperparameter it trained with last: the agent's defaults, overridden by its
        run's fixed [hyperparameters], overridden by the tuned values (`tuned`), completed by
        the agent as the engine completed them."""
        given = {**(self.meta.get("hyperparameters") or {}), **self.tuned}
        complete = getattr(self.agent, "effective_hyperparameters", None)
        full = (
            complete(given)
            if callable(complete)  # the built-in agents' base class; the protocol needs only
            else {**self.agent.default_hyperparameters(), **given}  # the defaults
        )
        ints = set(getattr(self.agent, "int_hyperparameters", ()))
        return {k: int(v) if k in ints else _plain(v) for k, v in full.items()}

    @classmethod
    def from_leaves(cls, meta: dict[str, Any], leaves: list[np.ndarray]) -> JaxMember:
        """Rebuild from leaves that carry a population axis of 1; `meta` names agent and env."""
        import jax
        import jax.numpy as jnp

        from gpbt.rl.agents import make_agent

        agent = make_agent(meta["agent"], meta["env"], meta.get("agent_options") or {})
        treedef, paths = _template(agent)
        stored = meta.get("leaf_paths")
        if len(leaves) != treedef.num_leaves or (stored is not None and stored != paths):
            raise ValueError(
                f"the saved state has {len(leaves)} leaves but agent {meta['agent']!r} on "
                f"{meta['env']!r} with these agent_options has {treedef.num_leaves} (or they "
                "are named differently): it was saved by a gpbt whose agent state differs; load "
                "it with that version"
            )
        state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x) for x in leaves])
        return cls(agent, state, {**meta, "leaf_paths": paths})

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        import jax

        path = Path(path)
        leaves = [np.asarray(x)[0] for x in jax.tree_util.tree_leaves(self.state)]
        meta = {"format": FORMAT, "version": VERSION, **self.meta}
        text = json.dumps(meta, default=str).encode()
        arrays = {f"leaf{i}": x for i, x in enumerate(leaves)}
        with open(path, "wb") as f:
            np.savez(f, meta=np.frombuffer(text, dtype=np.uint8), **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> JaxMember:
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path} is not a gpbt JAX member file (format {FORMAT!r})")
            n = sum(1 for k in data.files if k.startswith("leaf"))
            leaves = [data[f"leaf{i}"][None] for i in range(n)]
        return cls.from_leaves(meta, leaves)

    # ------------------------------------------------------------------ acting
    def act(self, obs: Any, *, greedy: bool = True, key: Any = None) -> np.ndarray:
        """The action for one observation (shape `env.obs_shape`) or for a batch of them
        (`[B, *obs_shape]`); greedy is the policy's argmax or mean action."""
        obs = np.asarray(obs, np.float32)
        single = obs.shape == tuple(self.env.obs_shape)
        batch = obs[None] if single else obs
        action = self.agent.act(self.state, batch[None], key=key, greedy=greedy)[0]
        return np.asarray(action[0] if single else action)

    def evaluate(self, episodes: int = 8, seed: int = 0) -> float:
        """Mean undiscounted return of `episodes` greedy episodes."""
        import jax

        return float(self.agent.evaluate(self.state, jax.random.key(seed), episodes)[0])
