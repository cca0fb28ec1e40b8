"""The data stage: become one with the data.

One loading pass (``view.py``) reads every sample once and is shared by the checks through
``ctx.state``; each check is one module: overview, corrupt samples, class balance and
conflicting labels, duplicates and leakage, label errors, outliers, feature checks
(constant, unscaled, shortcut), distribution shift, and the targets (scale, padding).
"""

from nnrecipe.data import (  # noqa: F401
    corrupt,
    duplicates,
    features,
    groups,
    label_errors,
    labels,
    outliers,
    overview,
    shift,
    targets,
)
from nnrecipe.data.view import DataView, get_view

__all__ = ["DataView", "get_view"]
