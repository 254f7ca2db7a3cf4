"""gpbt: Generalized Population-Based Training with Pairwise Learning."""

__version__ = "0.1.0"
