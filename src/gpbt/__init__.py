"""gpbt: Generalized Population-Based Training with Pairwise Learning."""

__version__ = "0.1.0"


def load(folder):
    """Open an experiment folder read-only: `.reports`, `.decisions` (pandas), `.lineage(m)`."""
    from gpbt.store import load as _load

    return _load(folder)
