"""gpbt.bench.stats against rliable itself (Agarwal et al. 2021), the field's reference.

The same (runs x tasks) score matrices go through both: point estimates must agree to float
precision, bootstrap intervals within Monte-Carlo error (both use percentile intervals over a
stratified bootstrap, with different random streams). rliable and its `arch` dependency are
test-only (the `dev` extra); the report never imports them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gpbt.bench import stats

metrics = pytest.importorskip("rliable.metrics")  # numpy and scipy only
NO_LIBRARY = ""
try:
    from rliable import library as rly
except Exception as err:  # noqa: BLE001 - arch 7 raises TypeError on import under pandas 3
    rly, NO_LIBRARY = None, f"rliable.library does not import ({type(err).__name__}: {err})"
needs_library = pytest.mark.skipif(
    rly is None,
    reason=f"{NO_LIBRARY}; with pandas 3 rliable's bootstrap needs arch 8 (rliable 1.2.0 asks "
    "for arch < 8, whose import fails): pip install --no-deps 'arch==8.0.0'",
)

RUNS, TASKS = 10, 3


@pytest.fixture(autouse=True)
def _rliable_on_arch_8(monkeypatch):
    """rliable 1.2.0 hands `random_state=` to arch's bootstrap, which arch 8 renamed `seed=`
    (and arch 7, the last release rliable allows, does not import under pandas 3). Translate
    that one keyword; rliable's own stratified resampling runs unchanged."""
    if rly is None:
        return
    import arch
    from arch.bootstrap.base import IIDBootstrap

    if int(arch.__version__.split(".")[0]) < 8:
        return
    original = IIDBootstrap.__init__

    def init(self, *args, random_state=None, seed=None, **kwargs):
        original(self, *args, seed=seed if seed is not None else random_state, **kwargs)

    monkeypatch.setattr(IIDBootstrap, "__init__", init)


def matrices(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two methods' normalised scores; task 1 is coarse, so it has many ties within and
    between methods (the 0.5 P(x = y) term of the probability of improvement matters)."""
    rng = np.random.default_rng(seed)
    x = rng.beta(4, 2, size=(RUNS, TASKS))
    y = rng.beta(3, 3, size=(RUNS, TASKS))
    x[:, 1], y[:, 1] = np.round(x[:, 1], 1), np.round(y[:, 1], 1)
    return x, y


def as_tasks(m: np.ndarray) -> dict[str, np.ndarray]:
    return {f"t{j}": m[:, j] for j in range(m.shape[1])}


def as_frame(named: dict[str, np.ndarray]) -> pd.DataFrame:
    rows = [
        (f"t{j}", method, run, float(m[run, j]))
        for method, m in named.items()
        for run in range(m.shape[0])
        for j in range(m.shape[1])
    ]
    return pd.DataFrame(rows, columns=["task", "method", "seed", "norm"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_estimates_equal_rliable(seed):
    x, y = matrices(seed)
    assert stats.iqm(x) == pytest.approx(metrics.aggregate_iqm(x), abs=1e-12)
    assert stats.probability_of_improvement(as_tasks(x), as_tasks(y)) == pytest.approx(
        metrics.probability_of_improvement(x, y), abs=1e-12
    )
    # identical score arrays: rliable special-cases 0.5; the Mann-Whitney form gives it too
    assert stats.probability_of_improvement(as_tasks(x), as_tasks(x)) == 0.5
    table = stats.aggregate(as_frame({"x": x}), reps=10).set_index("method").loc["x"]
    assert table["iqm"] == pytest.approx(metrics.aggregate_iqm(x), abs=1e-12)
    assert table["mean"] == pytest.approx(metrics.aggregate_mean(x), abs=1e-12)
    # rliable's median is the median of the per-task means, not of the pooled runs
    assert table["median"] == pytest.approx(metrics.aggregate_median(x), abs=1e-12)
    assert table["median"] != pytest.approx(np.median(x))


@needs_library
def test_performance_profile_points_equal_rliable():
    x, _ = matrices(3)
    taus = np.linspace(0, 1, 11)
    ours = stats.performance_profile(as_frame({"x": x}), taus=taus, reps=10)
    np.random.seed(0)
    theirs, _ = rly.create_performance_profile({"x": x}, taus, reps=10)
    np.testing.assert_allclose(ours["fraction"].to_numpy(), theirs["x"], atol=1e-12)


@needs_library
def test_bootstrap_intervals_agree_with_rliable_within_monte_carlo_error():
    x, y = matrices(4)
    reps = 4000
    np.random.seed(0)  # rliable's stratified bootstrap draws from numpy's global generator
    funcs = {
        "iqm": lambda s: np.array([metrics.aggregate_iqm(s)]),
        "mean": lambda s: np.array([metrics.aggregate_mean(s)]),
        "median": lambda s: np.array([metrics.aggregate_median(s)]),
    }
    table = stats.aggregate(as_frame({"x": x}), reps=reps).set_index("method").loc["x"]
    for name, fn in funcs.items():
        _, ci = rly.get_interval_estimates({"x": x}, fn, reps=reps)
        lo, hi = ci["x"][:, 0]
        # Monte-Carlo error of a 2.5% percentile with 4000 replicates is well under 0.01 here
        assert table[f"{name}_lo"] == pytest.approx(lo, abs=0.015), name
        assert table[f"{name}_hi"] == pytest.approx(hi, abs=0.015), name
        assert hi - lo > 0.05  # a real interval, not a degenerate one that agrees trivially

    np.random.seed(1)
    _, ci = rly.get_interval_estimates(
        {"xy": [x, y]}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]),
        reps=1500,
    )  # fmt: skip
    p, lo, hi = stats.probability_of_improvement_ci(as_tasks(x), as_tasks(y), reps=1500)
    assert p == pytest.approx(metrics.probability_of_improvement(x, y), abs=1e-12)
    assert lo == pytest.approx(ci["xy"][0, 0], abs=0.025)
    assert hi == pytest.approx(ci["xy"][1, 0], abs=0.025)
