"""The regularize stage: the regularisation ladder as experiments, and the first layer's
filters, visualised and scored."""

from nnrecipe.regularize import filters, ladder  # noqa: F401
