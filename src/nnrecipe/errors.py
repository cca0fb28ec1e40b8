"""One exception family for everything a user can get wrong.

The CLI turns an :class:`NNRecipeError` into one line and exit status 2; anything else is a
bug in nnrecipe (or in a check, which the runner turns into a ``check-crashed`` finding).
"""

from __future__ import annotations


class NNRecipeError(Exception):
    """Root of the errors a user can cause: bad experiment file, wrong shapes, bad options."""


class ExperimentError(NNRecipeError):
    """The experiment could not be loaded, validated or run."""


class DataError(NNRecipeError):
    """A dataset could not be read or has a shape/dtype nnrecipe cannot work with."""


class ConfigurationError(NNRecipeError):
    """An option or argument has an invalid value."""


class ContractError(ExperimentError):
    """User code broke the contract nnrecipe relies on (a ``train_step`` that returns no
    loss, a model factory that hands out the same model twice, ``sys.exit`` in user code).
    Raised wherever it is seen, it ends the run: exit status 2, one line."""


class OutputError(ConfigurationError):
    """The output folder cannot be used: not creatable, not writable, or busy with another
    run."""


class OutputBusyError(OutputError):
    """Another live run holds the output folder (its lock file)."""
