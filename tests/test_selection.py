"""The headline score of a run: select a member, then test it (gpbt.core.selection).

The statistical tests simulate the final evaluation directly: each member has a true return,
and an evaluation on one key adds episode noise. What they check is the reason the score
exists: the old figure (the best member on the episodes that picked it) is biased upwards for
a population of independent equals and not for clones, the new one for neither."""

import math

import numpy as np
import pytest

from gpbt.analysis.lineage import best_member
from gpbt.core.selection import counted, pick, score_basis, select_then_test
from gpbt.store import ExperimentStore, load

REPLICATES, POPULATION, NOISE, TRUE_RETURN = 4000, 8, 1.0, 10.0


def _simulate(independent: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """final_best and final_test over many runs of a population whose members all have the
    same true return. Independent members play the shared episodes with their own luck;
    clones (identical weights) play them identically, so one key gives one value to all."""
    rng = np.random.default_rng(seed)
    old, new = [], []
    for _ in range(REPLICATES):
        if independent:
            selection = TRUE_RETURN + NOISE * rng.standard_normal(POPULATION)
            test = TRUE_RETURN + NOISE * rng.standard_normal(POPULATION)
        else:
            selection = np.full(POPULATION, TRUE_RETURN + NOISE * rng.standard_normal())
            test = np.full(POPULATION, TRUE_RETURN + NOISE * rng.standard_normal())
        old.append(selection.max())
        new.append(select_then_test(selection, test).test)
    return np.array(old), np.array(new)


def _standard_error(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(len(x)))


def test_on_independent_equals_the_old_score_is_biased_and_the_new_one_is_not():
    old, new = _simulate(independent=True)
    # E[max of 8 standard normals] = 1.42: the winner's curse the old score paid
    assert old.mean() - TRUE_RETURN == pytest.approx(1.42, abs=6 * _standard_error(old))
    assert abs(new.mean() - TRUE_RETURN) < 4 * _standard_error(new)


def test_on_clones_both_scores_agree_and_neither_is_biased():
    old, new = _simulate(independent=False)
    for score in (old, new):
        assert abs(score.mean() - TRUE_RETURN) < 4 * _standard_error(score)
    assert abs(old.mean() - new.mean()) < 4 * math.hypot(_standard_error(old), _standard_error(new))


def test_the_member_is_picked_on_selection_and_scored_on_test():
    chosen = select_then_test([1.0, 5.0, 3.0], [9.0, 2.0, 4.0])
    assert (chosen.member, chosen.selection, chosen.test) == (1, 5.0, 2.0)
    assert chosen.test_mean == pytest.approx(5.0)


def test_nan_never_wins_ties_go_low_and_mode_min_picks_the_smallest():
    assert pick([math.nan, 2.0, 2.0, math.inf]) == 1
    assert pick([3.0, math.nan, 1.0], mode="min") == 2
    assert pick([math.nan, math.nan]) is None
    nothing = select_then_test([math.nan, math.nan], [1.0, 3.0])
    assert nothing.member is None and math.isnan(nothing.test) and nothing.test_mean == 2.0


def test_a_member_count_mismatch_is_refused():
    with pytest.raises(ValueError, match="one entry per member"):
        select_then_test([1.0, 2.0], [1.0])


def test_the_score_basis_counts_one_episode_in_the_singular():
    assert [counted(n, "episode") for n in (0, 1, 2)] == ["0 episodes", "1 episode", "2 episodes"]
    assert score_basis(32, 32) == (
        "selected on a greedy evaluation (32 episodes per member), tested on 32 fresh episodes"
    )
    assert score_basis(1) == "greedy evaluation, 1 episode per member"


@pytest.mark.parametrize(
    ("final", "basis"),
    [
        (
            {"episodes": 1, "returns": [1.0, 2.0], "test_episodes": 1, "test_returns": [3.0, 4.0]},
            "selected on a greedy evaluation (1 episode per member), tested on 1 fresh episode",
        ),
        # a run from before the test episodes: picked and scored on its one evaluation
        ({"episodes": 1, "returns": [1.0, 2.0]}, "greedy evaluation, 1 episode per member"),
    ],
)
def test_a_stored_run_evaluated_on_one_episode_says_so(tmp_path, final, basis):
    with ExperimentStore(tmp_path) as store:
        store.add_reports([{"member": m, "time": 1, "score": 0.0, "config": {}} for m in (0, 1)])
        store.set_state("final_evaluation", final)
    best = best_member(load(tmp_path))
    assert best.member == 1 and best.basis == basis


def test_the_report_names_the_member_the_run_stored_as_selected(tmp_path):
    """The report reads the run's own choice: here the stored `selected` (member 0) is not what
    re-selecting on the returns would give (member 1), as after a tie broken another way."""
    final = {"episodes": 2, "returns": [1.0, 2.0], "test_episodes": 2,
             "test_returns": [5.0, 4.0], "selected": 0}  # fmt: skip
    with ExperimentStore(tmp_path) as store:
        store.add_reports([{"member": m, "time": 1, "score": 0.0, "config": {}} for m in (0, 1)])
        store.set_state("final_evaluation", final)
    best = best_member(load(tmp_path))
    assert (best.member, best.score) == (0, 5.0)
    del final["selected"]
    with ExperimentStore(tmp_path) as store:
        store.set_state("final_evaluation", final)
    assert best_member(load(tmp_path)).member == 1
