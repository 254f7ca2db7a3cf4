"""A short animated GIF of a member's greedy episode, drawn from its observations.

gymnax has no renderer to rely on, so the frames are drawn here with matplotlib from what the
agent observes: MinAtar's `(10, 10, channels)` boards (one colour per channel) and the state
vectors of classic control (CartPole, Acrobot, Pendulum, MountainCar) as scenes. Any other
environment built from the observation alone: a `(H, W, C)` observation as a board like
MinAtar's, an `(H, W)` one as an image, a vector as a bar per entry (a user's own
`env = "module:function"` gets its animation this way). Brax is not drawn (its observations
are physics state, and building it only to draw is slow); `can_animate` says which registered
environments are. The GIF is written with matplotlib's PillowWriter (Pillow comes with
matplotlib) at about 400 px wide, a size a person can read, still small enough to embed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Episode", "can_animate", "play", "write_gif"]

CLASSIC = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0")
# inches at DPI: at least 400 px wide; square scenes take the default, wide ones less height
DPI = 125
FIGSIZE = {
    "CartPole-v1": (3.6, 1.9),
    "MountainCar-v0": (3.4, 2.8),
    "MountainCarContinuous-v0": (3.4, 2.8),
}
DEFAULT_FIGSIZE = (3.3, 3.5)
CAPTION_POINTS = 10  # about 17 px at DPI: legible in the report


def can_animate(env_name: str) -> bool:
    """Whether a registered environment is drawn (Brax is not); an environment from a user's
    factory is drawn from its observations (see the module doc)."""
    return not env_name.startswith("brax:")


@dataclass
class Episode:
    observations: list[np.ndarray]  # one more than rewards: the last is the episode's end
    rewards: list[float]
    finished: bool  # False: cut at max_steps

    @property
    def total(self) -> float:
        return float(sum(self.rewards))


def play(member, seed: int = 0, max_steps: int = 1000) -> Episode:
    """One greedy episode of a `JaxMember` in its own environment."""
    import jax

    env = member.env
    step = jax.jit(env.step)
    key, k_reset = jax.random.split(jax.random.key(seed))
    obs, state = jax.jit(env.reset)(k_reset)
    observations, rewards = [np.asarray(obs)], []
    for _ in range(max_steps):
        key, k_step = jax.random.split(key)
        obs, state, reward, done, info = step(k_step, state, member.act(observations[-1]))
        rewards.append(float(reward))
        if bool(done):
            # the env already reset; the observation that ended the episode is final_obs
            observations.append(np.asarray(info["final_obs"]))
            return Episode(observations, rewards, True)
        observations.append(np.asarray(obs))
    return Episode(observations, rewards, False)


# ------------------------------------------------------------------ drawing one frame
Drawer = Callable[[np.ndarray], None]


def _minatar(ax, first: np.ndarray) -> Drawer:
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    channels = first.shape[-1]
    palette = plt.get_cmap("tab20" if channels > 10 else "tab10")
    cmap = ListedColormap([(0, 0, 0)] + [palette(i % palette.N) for i in range(channels)])

    def board(obs: np.ndarray) -> np.ndarray:
        on = obs > 0.5
        return np.where(on.any(-1), on.argmax(-1) + 1, 0)

    image = ax.imshow(board(first), cmap=cmap, vmin=0, vmax=channels, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return lambda obs: image.set_data(board(obs))


def _cartpole(ax, first: np.ndarray) -> Drawer:
    from matplotlib.patches import Rectangle

    ax.plot([-2.4, 2.4], [0, 0], color="0.4", lw=1)
    cart = ax.add_patch(Rectangle((0, 0), 0.5, 0.3, color="tab:blue"))
    (pole,) = ax.plot([], [], color="tab:orange", lw=4, solid_capstyle="round")
    ax.set_xlim(-2.6, 2.6)
    ax.set_ylim(-0.4, 1.6)

    def update(obs: np.ndarray) -> None:
        x, theta = float(obs[0]), float(obs[2])
        cart.set_xy((x - 0.25, -0.15))
        pole.set_data([x, x + math.sin(theta)], [0.15, 0.15 + math.cos(theta)])

    return update


def _acrobot(ax, first: np.ndarray) -> Drawer:
    ax.plot([-2.2, 2.2], [1, 1], color="0.6", lw=1, ls="--")  # the tip must rise above this
    (links,) = ax.plot([], [], "-o", color="tab:blue", lw=3, ms=4)
    ax.set_xlim(-2.2, 2.2)
    ax.set_ylim(-2.2, 2.2)

    def update(obs: np.ndarray) -> None:
        c1, s1, c2, s2 = (float(v) for v in obs[:4])
        s12, c12 = s1 * c2 + c1 * s2, c1 * c2 - s1 * s2  # sin and cos of theta1 + theta2
        x1, y1 = s1, -c1
        links.set_data([0, x1, x1 + s12], [0, y1, y1 - c12])

    return update


def _pendulum(ax, first: np.ndarray) -> Drawer:
    (rod,) = ax.plot([], [], "-o", color="tab:red", lw=4, ms=5)
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.3, 1.3)
    return lambda obs: rod.set_data([0, float(obs[1])], [0, float(obs[0])])


def _mountain_car(ax, first: np.ndarray) -> Drawer:
    xs = np.linspace(-1.2, 0.6, 100)
    ax.plot(xs, np.sin(3 * xs), color="0.4")
    ax.plot([0.5], [math.sin(1.5)], marker=">", color="tab:green", ms=8)  # the goal
    (car,) = ax.plot([], [], "o", color="tab:blue", ms=9)
    ax.set_xlim(-1.25, 0.65)
    ax.set_ylim(-1.2, 1.3)

    def update(obs: np.ndarray) -> None:
        x = float(obs[0])
        car.set_data([x], [math.sin(3 * x)])

    return update


def _image(ax, observations: np.ndarray) -> Drawer:
    """A 2-D observation as a grey image, one scale for the whole episode."""
    low, high = float(observations.min()), float(observations.max())
    image = ax.imshow(observations[0], cmap="gray", vmin=low, vmax=max(high, low + 1e-6),
                      interpolation="nearest")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    return image.set_data


def _bars(ax, observations: np.ndarray) -> Drawer:
    """A vector observation as a bar per entry, one y scale for the whole episode."""
    n = observations.shape[-1]
    bars = ax.bar(range(n), observations[0], color="tab:blue")
    low, high = min(0.0, float(observations.min())), max(0.0, float(observations.max()))
    pad = 0.05 * max(high - low, 1e-6)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel("observation entry", fontsize=CAPTION_POINTS - 2)
    ax.tick_params(labelsize=CAPTION_POINTS - 3)

    def update(obs: np.ndarray) -> None:
        for bar, value in zip(bars, obs, strict=True):
            bar.set_height(float(value))

    return update


def _from_observations(ax, observations: np.ndarray) -> Drawer:
    """An environment gpbt has no scene for, drawn from what the agent observes."""
    shape = observations.shape[1:]
    if len(shape) == 3:
        return _minatar(ax, observations[0])
    if len(shape) == 2:
        return _image(ax, observations)
    if len(shape) == 1:
        return _bars(ax, observations)
    raise ValueError(
        f"no frame drawer for observations of shape {shape}: gpbt draws vectors, images and "
        "(H, W, channels) boards"
    )


def _drawer(env_name: str, ax, observations: np.ndarray) -> Drawer:
    first = observations[0]
    if env_name.endswith("-MinAtar"):
        return _minatar(ax, first)
    table = {
        "CartPole-v1": _cartpole,
        "Acrobot-v1": _acrobot,
        "Pendulum-v1": _pendulum,
        "MountainCar-v0": _mountain_car,
        "MountainCarContinuous-v0": _mountain_car,
    }
    if env_name not in table:
        return _from_observations(ax, observations)
    artists = table[env_name](ax, first)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    return artists


def write_gif(
    member,
    path: str | Path,
    *,
    seed: int = 0,
    max_steps: int = 1000,
    max_frames: int = 80,
    fps: int = 12,
) -> Episode:
    """Play one greedy episode of `member` and write it as an animated GIF of at most
    `max_frames` frames (a longer episode is shown every k-th step, always with its end)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import PillowWriter

    env_name = member.env.name
    if not can_animate(env_name):
        raise ValueError(f"no frame drawer for {env_name!r}: gpbt does not draw Brax")
    episode = play(member, seed=seed, max_steps=max_steps)
    n = len(episode.observations)
    stride = max(1, math.ceil(n / max_frames))
    frames = list(range(0, n, stride))
    if frames[-1] != n - 1:
        frames.append(n - 1)
    returns = np.concatenate([[0.0], np.cumsum(episode.rewards)])
    fig, ax = plt.subplots(figsize=FIGSIZE.get(env_name, DEFAULT_FIGSIZE))
    try:
        update = _drawer(env_name, ax, np.stack(episode.observations))
        # the longest caption sizes the layout, so no frame's caption is cut
        title = ax.set_title(f"step {n - 1}  return {returns[-1]:.4g}", fontsize=CAPTION_POINTS)
        fig.tight_layout()
        writer = PillowWriter(fps=fps)
        with writer.saving(fig, str(path), dpi=DPI):
            for i in frames:
                update(episode.observations[i])
                title.set_text(f"step {i}  return {returns[i]:.4g}")
                writer.grab_frame()
    finally:
        plt.close(fig)
    return episode
