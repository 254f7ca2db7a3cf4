"""The public path of the search space (`from gpbt.space import Space, Float, Int, Choice`).

The space lives in the pure core (`gpbt.core.space`), beside the schedulers that sample and
perturb it; this module keeps the import path that users and their scripts name.
"""

from gpbt.core.space import Choice, Float, Int, Param, Space

__all__ = ["Choice", "Float", "Int", "Param", "Space"]
