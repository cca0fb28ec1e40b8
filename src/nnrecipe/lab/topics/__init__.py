"""The lab's topics. Importing registers them; ``list_topics`` orders them by the seed's
question numbers."""

from nnrecipe.lab.topics import activations, gradients, normalization  # noqa: F401
