"""nnrecipe: "A recipe for training neural networks", as software.

Point it at an :class:`Experiment` (model factory, data, loss, optimizer) and it walks the
recipe's stages, running the checks a careful engineer would run by hand, and returns
findings with evidence and a fix.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from nnrecipe.errors import ConfigurationError, DataError, ExperimentError, NNRecipeError

__version__ = "0.1.0"

# Heavier parts are imported on first use, so `import nnrecipe` stays light (no torch: the
# CLI's --help, `codes` and argument errors answer without it).
_LAZY = {
    "Experiment": "nnrecipe.experiment",
    "Finding": "nnrecipe.core.findings",
    "Severity": "nnrecipe.core.findings",
    "run": "nnrecipe.api",
    "load_experiment": "nnrecipe.loading",
    "init_output_bias": "nnrecipe.skeleton.init_bias",
    "RunResult": "nnrecipe.core.results",
    "watch": "nnrecipe.train.watch",
    "lr_find": "nnrecipe.overfit.finder",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nnrecipe' has no attribute {name!r}")


__all__ = [
    "ConfigurationError", "DataError", "ExperimentError", "NNRecipeError", "__version__",
    *_LAZY,
]
