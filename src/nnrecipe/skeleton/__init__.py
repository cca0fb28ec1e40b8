"""The skeleton stage: end-to-end sanity checks and dumb baselines, before real training.

Checks, in the order they run: ``nondeterministic``, ``augmentation-active``,
``inputs-not-normalized``, ``channel-order``, ``target-shape-mismatch``, ``double-softmax``,
``output-activation``, ``init-loss-mismatch``, ``dropout-before-batchnorm``, ``dropout-rate-high``,
``grads-not-zeroed``,
``params-not-updating``, ``eval-mode-training``, ``unregistered-parameters``,
``params-not-in-optimizer``, ``batch-dependency``, ``causal-leak``,
``baseline-not-beaten``, ``input-independent``, ``cannot-overfit-batch``.
"""

from nnrecipe.skeleton import (  # noqa: F401
    augmentation,
    baselines,
    batch_dependency,
    causal,
    channel_order,
    determinism,
    double_softmax,
    dropout_bn,
    dropout_rate,
    eval_mode,
    grads_zeroed,
    init_loss,
    input_independent,
    inputs,
    output_activation,
    overfit_batch,
    params_updating,
    registration,
    target_shape,
)
from nnrecipe.skeleton.init_bias import init_output_bias

__all__ = ["init_output_bias"]
