"""The pure, seeded scheduler core: every engine asks it what to do."""

from gpbt.core.decisions import Continue, Decision, DecisionRecord, Exploit, Stop
from gpbt.core.default import DefaultConfig
from gpbt.core.fixed_schedule import FixedSchedule
from gpbt.core.mf_pbt import MFPBT
from gpbt.core.patient_pbt import PatientPBT
from gpbt.core.schedulers import GPBT, PB2, PBT, PopulationScheduler, RandomSearch
from gpbt.core.strategies import KeepWinner, PairwiseLearning, Perturb, Resample, Strategy


def __getattr__(name):
    # PB2's explore step needs scikit-learn, which is slow to import; load it on first use so
    # worker processes and the other methods never pay for it.
    if name == "PB2Explore":
        from gpbt.core.pb2 import PB2Explore

        return PB2Explore
    raise AttributeError(name)


__all__ = [
    "GPBT",
    "PB2",
    "PBT",
    "MFPBT",
    "PatientPBT",
    "RandomSearch",
    "DefaultConfig",
    "FixedSchedule",
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
