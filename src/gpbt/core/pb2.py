"""PB2's explore step: GP-UCB over a time-varying squared-exponential kernel.

Following Parker-Holder et al. (NeurIPS 2020): the GP models the score change per unit time of a
training stretch as a function of x = (time, score at the start, hyperparameters). The kernel
forgets old data through time:

    k(x, x') = s^2 * exp(-|z - z'|^2 / (2 l^2)) * (1 - eps)^(|t - t'| / 2)

with z = (start score, hyperparameters in the unit cube). The loser's new hyperparameters maximise
UCB = mu + kappa * sigma at (now, the winner's score), where sigma also counts the other members
that are training right now (their points are added to the GP as if observed, which shrinks the
variance around them and pushes the batch apart: GP-BUCB's "hallucinated" observations).

Checked against Ray Tune 2.60's PB2 (`tests/test_pb2_reference.py` calls Ray's own kernel, UCB,
normalisation and explore step on one toy table). Where the designs agree the numbers match: the
kernel and its gradients (Ray's `exp(-d2 / lengthscale)` is ours with lengthscale = 2 l^2; signal
variance and epsilon are the same numbers), the posterior mean and variance with and without
in-flight points, the log marginal likelihood and its fitted optimum, the pick over one candidate
set under one acquisition, linear hyperparameter scaling and target standardisation. Where they
differ, on purpose:
- UCB: ours is the paper's mu + kappa * sigma with a constant kappa; Ray's is mu + kappa * sigma^2
  with kappa = sqrt(0.2 + max(0, log(0.4 n))).
- noise: ours fits a white-noise level (score changes are noisy); Ray fixes alpha = 1e-10 and
  interpolates them. Ray also clips standardised targets at +-2; ours keeps the extremes, which
  are the stretches UCB most needs to see.
- rows and query: a row is a stretch at its start time; the query is the stretch the loser is
  about to train, at (now, the winner's current score). Ray labels rows by their end time and
  queries at the winner's last end time with the score its last stretch *started* from.
  Time and start score are scaled over the data plus every current point, so the query lies
  in [0, 1]; Ray scales over the data only.
- in-flight points: every other member, at (now, the score its next stretch starts from), in the
  data GP's covariance. Ray adds only the configs already chosen at this time step, at the query's
  (time, score), to a second GP whose hyperparameters it refits on made-up zero targets.
- fit and data: ours warm-starts a capped L-BFGS and re-optimises every `refit_every`
  observations over a sliding `data_window`; Ray refits from (1, 1, 0.1) at every decision, keeps
  up to 1000 rows and above 200 picks the window length by likelihood (`select_length`).
- acquisition optimiser: seeded random candidates plus local rounds; Ray runs 10 L-BFGS-B restarts
  from numpy's global random state. Ray knows linear [min, max] bounds only; ours works in the
  space's unit cube (log scales, integers, ordered choices).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import (
    ConstantKernel,
    Hyperparameter,
    Kernel,
    WhiteKernel,
)
from threadpoolctl import threadpool_limits

from gpbt.core.space import Choice, Space, to_plain
from gpbt.core.strategies import ExploreContext, Strategy


class TimeVaryingSquaredExponential(Kernel):
    """SE over every column but the first, times (1 - epsilon)^(|dt| / 2) over the first."""

    def __init__(
        self,
        lengthscale: float = 0.5,
        lengthscale_bounds=(1e-2, 1e2),
        epsilon: float = 0.1,
        epsilon_bounds=(1e-5, 0.5),
    ):
        self.lengthscale = lengthscale
        self.lengthscale_bounds = lengthscale_bounds
        self.epsilon = epsilon
        self.epsilon_bounds = epsilon_bounds

    @property
    def hyperparameter_lengthscale(self) -> Hyperparameter:
        return Hyperparameter("lengthscale", "numeric", self.lengthscale_bounds)

    @property
    def hyperparameter_epsilon(self) -> Hyperparameter:
        return Hyperparameter("epsilon", "numeric", self.epsilon_bounds)

    def __call__(self, X, Y=None, eval_gradient=False):
        X = np.atleast_2d(X)
        if Y is None:
            Y = X
        elif eval_gradient:
            raise ValueError("gradient only available when Y is None")
        Y = np.atleast_2d(Y)
        dt = np.abs(X[:, :1] - Y[:, :1].T)
        # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: one matrix product instead of an (n, m, d)
        # temporary, which made this kernel most of a PB2 decision's time.
        A, B = X[:, 1:], Y[:, 1:]
        d2 = np.maximum((A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T), 0.0)
        l2 = self.lengthscale**2
        log_decay = np.log1p(-self.epsilon)
        K = np.exp(-d2 / (2 * l2) + 0.5 * dt * log_decay)
        if not eval_gradient:
            return K
        # Gradients with respect to the log of each hyperparameter, as scikit-learn expects,
        # and in its order: `theta` lists a kernel's hyperparameters sorted by name, so
        # epsilon comes before lengthscale (returning them the other way round fitted each
        # parameter with the other's gradient).
        d_log_l = K * d2 / l2
        d_log_eps = K * 0.5 * dt * (-self.epsilon / (1.0 - self.epsilon))
        return K, np.stack([d_log_eps, d_log_l], axis=-1)

    def diag(self, X):
        return np.ones(np.atleast_2d(X).shape[0])

    def is_stationary(self) -> bool:
        return False


class PB2Explore(Strategy):
    name = "pb2"

    def __init__(
        self,
        data_window: int = 64,
        kappa: float = 2.0,
        seed: int = 0,
        num_candidates: int = 256,
        num_polish: int = 1,
        refit_every: int = 4,
    ):
        if data_window < 4:
            raise ValueError(f"PB2 data_window={data_window}: keep at least 4 points")
        if int(refit_every) < 1:
            raise ValueError(
                f"PB2 refit_every={refit_every}: must be >= 1 (1 re-optimises the GP's "
                "hyperparameters at every new observation)"
            )
        self.data_window = int(data_window)
        self.refit_every = int(refit_every)
        self.kappa = float(kappa)
        self.num_candidates = int(num_candidates)
        self.num_polish = int(num_polish)
        self.data: list[list[float]] = []  # rows: t, start score, unit hps..., score change/time
        self.last_fit: dict[str, Any] = {}
        # GP hyperparameters (signal variance, lengthscale, epsilon, noise) of the last fit
        self.warm_start: list[float] = [1.0, 0.5, 0.1, 0.1]
        # Observations ever made, and how many there were when the GP's hyperparameters were
        # last optimised (None: never). Between optimisations the GP is still conditioned on
        # all current data, with the last hyperparameters: the optimisation is most of a
        # decision's cost, and a few new points barely move its optimum.
        self.observed = 0
        self.optimised_at: int | None = None
        self._cache = None

    def options(self) -> dict[str, Any]:
        return {
            "data_window": self.data_window,
            "kappa": self.kappa,
            "refit_every": self.refit_every,
        }

    def check_space(self, space: Space) -> None:
        for name, p in space.params.items():
            if isinstance(p, Choice) and not p.ordered:
                raise ValueError(
                    f"parameter '{name}': PB2 cannot model an unordered choice; "
                    "declare it ordered=true if its values have an order, or use "
                    "gpbt-pl / pbt for this space"
                )
        # The scheduler hands its space over once; observe() needs it to place configs.
        self.space = space

    def observe(self, member, time, prev_time, prev_score, score, config) -> None:
        rate = (score - prev_score) / (time - prev_time)
        self.data.append([prev_time, prev_score, *self.space.to_unit(config).tolist(), rate])
        self.observed += 1
        if len(self.data) > self.data_window:
            self.data = self.data[-self.data_window :]

    def _fit(self, ctx: ExploreContext):
        """Fit the GP, or reuse the fit when nothing it depends on has changed (several losers
        at one boundary share it); also says whether this call optimised its hyperparameters.
        The fit draws no random numbers, so reuse cannot change any decision; the last fitted
        hyperparameters warm-start the next fit and are saved."""
        data = np.asarray(self.data, dtype=float)
        scores = [s for _, s in ctx.population.values() if s is not None and np.isfinite(s)]
        # Normalise time and start score over the data and every member's current point (a
        # query point is always one of those) so one lengthscale fits every column.
        t_all = np.concatenate([data[:, 0], [ctx.time]])
        s_all = np.concatenate([data[:, 1], [ctx.winner_score], scores])
        norm = (t_all.min(), max(np.ptp(t_all), 1e-12), s_all.min(), max(np.ptp(s_all), 1e-12))
        key = (len(self.data), tuple(self.data[-1]), norm)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2], norm, False
        t_lo, t_span, s_lo, s_span = norm
        X, y = data[:, :-1].copy(), data[:, -1]
        X[:, 0] = (X[:, 0] - t_lo) / t_span
        X[:, 1] = (X[:, 1] - s_lo) / s_span
        y_std = y.std() if y.std() > 0 else 1.0
        y_norm = (y - y.mean()) / y_std
        c, ls, eps, noise = self.warm_start
        kernel = ConstantKernel(c, (1e-2, 1e2)) * TimeVaryingSquaredExponential(
            lengthscale=ls, epsilon=eps
        ) + WhiteKernel(noise, (1e-5, 1.0))
        optimise = (
            self.optimised_at is None or self.observed - self.optimised_at >= self.refit_every
        )
        gp = GaussianProcessRegressor(
            kernel,
            normalize_y=False,
            n_restarts_optimizer=0,
            optimizer=_bounded_lbfgs if optimise else None,
        )
        with warnings.catch_warnings():
            # Hyperparameters at their bounds are normal with few, noisy points; the fit is
            # still usable and the warning would flood a run's log.
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(X, y_norm)
        if optimise:
            self.optimised_at = self.observed
        k = gp.kernel_
        self.warm_start = [
            float(k.k1.k1.constant_value),
            float(k.k1.k2.lengthscale),
            float(k.k1.k2.epsilon),
            float(k.k2.noise_level),
        ]
        self._cache = (key, gp, X)
        return gp, X, norm, optimise

    def explore(self, ctx: ExploreContext) -> tuple[dict[str, Any], dict[str, Any]]:
        # The matrices are small (at most data_window rows): BLAS threads only add start-up
        # and contention cost, which on a busy 2-core machine made a fit 10x slower.
        with threadpool_limits(1):
            return self._explore(ctx)

    def _explore(self, ctx: ExploreContext) -> tuple[dict[str, Any], dict[str, Any]]:
        space, rng = ctx.space, ctx.rng
        d = len(space)
        if len(self.data) < 2:
            self.last_fit = {"points": len(self.data), "fallback": "random"}
            return ({n: to_plain(v) for n, v in space.sample(rng).items()}, dict(ctx.loser_state))
        pending = [
            (c, s)
            for i, (c, s) in ctx.population.items()
            if i != ctx.loser and s is not None and np.isfinite(s)
        ]
        gp, X, (t_lo, t_span, s_lo, s_span), optimised = self._fit(ctx)
        t_now = (ctx.time - t_lo) / t_span
        s_win = (ctx.winner_score - s_lo) / s_span
        X_pend = np.array(
            [[t_now, (s - s_lo) / s_span, *space.to_unit(c)] for c, s in pending]
        ).reshape(-1, X.shape[1])
        acquisition = _BatchUCB(gp, X, X_pend, self.kappa)

        def ucb(h: np.ndarray) -> np.ndarray:
            z = np.hstack([np.full((len(h), 1), t_now), np.full((len(h), 1), s_win), h])
            return acquisition(z)

        # Random restarts over the unit box, then a few rounds of batched local refinement
        # around the best point with a shrinking radius: every evaluation is one vectorised
        # GP prediction, where a scipy polish with numerical gradients cost hundreds of
        # single-point predictions (seconds per decision on a loaded 2-core machine).
        candidates = rng.uniform(size=(self.num_candidates, d))
        values = ucb(candidates)
        best = int(np.argmax(values))
        best_h, best_v = candidates[best], float(values[best])
        for radius in (0.1, 0.03, 0.01)[: max(self.num_polish, 0) * 3]:
            local = np.clip(best_h + radius * rng.standard_normal((64, d)), 0.0, 1.0)
            local_values = ucb(local)
            j = int(np.argmax(local_values))
            if local_values[j] > best_v:
                best_h, best_v = local[j], float(local_values[j])
        self.last_fit = {
            "points": len(self.data),
            "ucb": float(best_v),
            "kernel": str(gp.kernel_),
            "optimised": optimised,  # this decision re-optimised the GP's hyperparameters
        }
        new_config = {n: to_plain(v) for n, v in space.from_unit(best_h).items()}
        return new_config, dict(ctx.loser_state)

    def state_dict(self) -> dict[str, Any]:
        return {
            "data": [list(r) for r in self.data],
            "warm_start": list(self.warm_start),
            "observed": self.observed,
            "optimised_at": self.optimised_at,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.data = [list(r) for r in state["data"]]
        self.warm_start = list(state["warm_start"])
        self.observed = int(state.get("observed", len(self.data)))
        self.optimised_at = state.get("optimised_at")
        self._cache = None


def _bounded_lbfgs(obj_func, initial_theta, bounds):
    """scikit-learn's default optimiser with caps on iterations and on likelihood evaluations:
    fits are warm-started from the previous one, so a few iterations suffice, and the
    evaluation cap bounds the occasional fit whose line searches wander (up to 300 ms at a
    full window before the cap, against about 40 ms for a typical fit)."""
    res = minimize(
        obj_func,
        initial_theta,
        method="L-BFGS-B",
        jac=True,
        bounds=bounds,
        options={"maxiter": 30, "maxfun": 40},
    )
    return res.x, res.fun


class _BatchUCB:
    """mu from the data alone; sigma from the data plus the in-flight (pending) points."""

    def __init__(
        self, gp: GaussianProcessRegressor, X: np.ndarray, X_pend: np.ndarray, kappa: float
    ):
        self.gp, self.kappa = gp, kappa
        kernel = gp.kernel_
        self.signal = kernel.k1  # Constant * TV, without the white noise
        noise = kernel.k2.noise_level
        X_all = np.vstack([X, X_pend]) if len(X_pend) else X
        K = self.signal(X_all) + noise * np.eye(len(X_all))
        self.X_all = X_all
        self.L = np.linalg.cholesky(K + 1e-9 * np.eye(len(K)))
        self.prior_var = float(kernel.k1.k1.constant_value)

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        mu = self.gp.predict(Z)
        k = self.signal(Z, self.X_all)
        v = solve_triangular(self.L, k.T, lower=True, check_finite=False)
        var = np.maximum(self.prior_var - (v**2).sum(0), 1e-12)
        return mu + self.kappa * np.sqrt(var)
