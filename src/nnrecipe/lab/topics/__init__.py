"""The lab's topics. Importing registers them; ``list_topics`` orders them by the seed's
question numbers."""

from nnrecipe.lab.topics import (  # noqa: F401
    activations,
    batching,
    curves,
    diagnostics,
    gradients,
    learning_rate,
    normalization,
    optimizers,
    overfit_first,
    regularization,
    symmetry,
)
