"""The overfit stage: a learning rate you can trust (the range test), a model large enough to
overfit (capacity), schedules for the trainer, and advice computed for the run.

Importing it registers its checks: ``lr-suggestion``, ``capacity``, ``lr-advice``.
"""

from nnrecipe.overfit import advice, capacity, lr_test  # noqa: F401
from nnrecipe.overfit.finder import lr_find
from nnrecipe.overfit.schedules import make_scheduler

__all__ = ["lr_find", "make_scheduler"]
