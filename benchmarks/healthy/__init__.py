"""The healthy-training corpus: correct setups a practitioner would call healthy.

On these, nnrecipe must raise no warning and no error (a false alarm is a bug as serious as
a miss). ``benchmarks/false_alarms.py`` runs them through ``check`` and ``train`` (and a
subset through ``nnrecipe.watch`` in a plain loop) with several seeds and counts what fired.

From Python (the repository root on ``sys.path``)::

    import sys; sys.path.insert(0, "benchmarks")
    from healthy import SETUPS
    exp = SETUPS["diabetes-mlp"].build(seed=1)       # an nnrecipe.Experiment
    nnrecipe.run(exp, stages=["train"])

Setups live in ``healthy/setups.py`` (one function each; the docstring says what it covers),
their data in ``healthy/data.py`` (scikit-learn's bundled sets and seeded synthetic data,
nothing downloaded) and their models in ``healthy/models.py``.
"""

from __future__ import annotations

from . import setups  # noqa: F401  (registers the setups)
from .registry import SETUPS, Setup

__all__ = ["SETUPS", "Setup"]
