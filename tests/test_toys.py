import numpy as np
import pytest

from gpbt.core.methods import make_scheduler
from gpbt.engines.toys import MovingOptimumToy, QuadraticToy, run_toy

SEEDS = range(50)


def best_scores(toy, method, population=8, options=None):
    return np.array(
        [
            run_toy(
                toy,
                make_scheduler(
                    method, toy.space, seed=s, perturbation_interval=toy.interval, options=options
                ),
                population,
                s,
            ).best_score
            for s in SEEDS
        ]
    )


@pytest.mark.parametrize("toy", [QuadraticToy(), MovingOptimumToy()], ids=lambda t: t.name)
@pytest.mark.parametrize("method", ["gpbt-pl", "pbt"])
def test_exploiting_methods_clearly_beat_random_search(toy, method):
    # Common random numbers: seed s gives every method the same start and the same noise, so
    # the per-seed difference isolates the method.
    diff = best_scores(toy, method) - best_scores(toy, "random")
    t_stat = diff.mean() / (diff.std(ddof=1) / np.sqrt(len(diff)))
    assert diff.mean() > 0
    assert t_stat > 4.0
    assert (diff > 0).mean() >= 0.7


def test_quadratic_toy_exploit_combines_progress():
    toy = QuadraticToy()
    result = run_toy(
        toy, make_scheduler("gpbt-pl", toy.space, perturbation_interval=toy.interval, seed=0), 4, 0
    )
    assert result.exploits > 0
    assert result.best_score > 1.0
    assert all(r["kind"] in ("continue", "exploit") for r in result.records)
