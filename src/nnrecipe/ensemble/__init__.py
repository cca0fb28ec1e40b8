"""The ensemble stage: squeeze out the juice with up to 5 of the best models, then the
journey through the whole recipe."""

from nnrecipe.ensemble import journey, squeeze  # noqa: F401
