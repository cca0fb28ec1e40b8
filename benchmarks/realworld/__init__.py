"""The real-world corpus: real, sourced training bugs and healthy programs (issue 13).

Importing the package registers every case (one module per group of cases)."""

from __future__ import annotations

import importlib
import pkgutil

from .registry import CASES, Case

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name.startswith("cases_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["CASES", "Case"]
