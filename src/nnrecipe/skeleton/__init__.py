"""The skeleton stage: end-to-end sanity checks and dumb baselines, before real training."""

from nnrecipe.skeleton import init_loss, overfit_batch  # noqa: F401
from nnrecipe.skeleton.init_bias import init_output_bias

__all__ = ["init_output_bias"]
