"""The train stage: watching every step of training."""

from nnrecipe.train import nonfinite  # noqa: F401
