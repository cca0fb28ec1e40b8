"""Importing this module registers every stage's checks (the runner does it for you)."""

from nnrecipe import data, ensemble, overfit, regularize, skeleton, train, tune  # noqa: F401
