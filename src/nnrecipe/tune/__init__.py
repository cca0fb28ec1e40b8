"""The tune stage: random and Bayesian search (Optuna) with pruning, in a study that resumes
and that many workers can share."""

from nnrecipe.tune import search  # noqa: F401
