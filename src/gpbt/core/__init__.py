"""The pure, seeded scheduler core: every engine asks it what to do."""

from gpbt.core.decisions import Continue, Decision, DecisionRecord, Exploit, Stop
from gpbt.core.pb2 import PB2Explore
from gpbt.core.schedulers import GPBT, PB2, PBT, PopulationScheduler, RandomSearch
from gpbt.core.strategies import KeepWinner, PairwiseLearning, Perturb, Resample, Strategy

__all__ = [
    "GPBT",
    "PB2",
    "PBT",
    "RandomSearch",
    "PopulationScheduler",
    "PairwiseLearning",
    "Perturb",
    "Resample",
    "KeepWinner",
    "PB2Explore",
    "Strategy",
    "Continue",
    "Exploit",
    "Stop",
    "Decision",
    "DecisionRecord",
]
