"""Loading an experiment from ``FILE.py`` or ``FILE.py:function``, with clear errors."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from nnrecipe.errors import ContractError, ExperimentError

if TYPE_CHECKING:  # importing it imports torch: not needed to reject a missing file
    from nnrecipe.experiment import Experiment

DEFAULT_FUNCTION = "experiment"


def split_target(target: str) -> tuple[Path, str]:
    """``'dir/exp.py:make'`` -> (Path('dir/exp.py'), 'make'); the function defaults to
    ``experiment``. A Windows drive letter's colon is not taken for the separator."""
    path, sep, func = target.rpartition(":")
    if not sep or not path or "/" in func or "\\" in func or func.endswith(".py"):
        return Path(target), DEFAULT_FUNCTION
    return Path(path), func or DEFAULT_FUNCTION


def load_experiment(target: str) -> tuple[Experiment, str]:
    """Import the file, call its function and return ``(experiment, name)``.

    Every way this can fail raises :class:`ExperimentError` naming the cause.
    """
    path, func_name = split_target(target)
    if not path.exists():
        raise ExperimentError(f"no such file: {path}")
    if path.is_dir():
        raise ExperimentError(f"{path} is a folder; give a Python file defining {func_name}()")
    if path.suffix != ".py":
        raise ExperimentError(f"{path} is not a Python file; give FILE.py or FILE.py:function")
    module_name = f"nnrecipe_user_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ExperimentError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except SystemExit as e:
        raise ContractError(f"importing {path} called sys.exit({e.code!r}); an experiment "
                            "file must not exit when imported (guard script code with "
                            "`if __name__ == \"__main__\":`)") from e
    except Exception as e:
        raise ExperimentError(f"importing {path} raised {type(e).__name__}: {e}") from e
    finally:
        sys.path.pop(0)
    func = getattr(module, func_name, None)
    if func is None:
        defined = sorted(n for n, v in vars(module).items()
                         if callable(v) and not n.startswith("_")
                         and getattr(v, "__module__", None) == module_name)
        hint = f"; functions it defines: {', '.join(defined)}" if defined else ""
        raise ExperimentError(f"{path} has no function {func_name}(){hint}. "
                              f"Define `def {func_name}() -> nnrecipe.Experiment` or pass "
                              f"{path}:FUNCTION")
    if not callable(func):
        raise ExperimentError(f"{path}:{func_name} is not a function")
    try:
        exp = func()
    except ExperimentError:
        raise
    except SystemExit as e:
        raise ContractError(f"{path}:{func_name}() called sys.exit({e.code!r}); it must "
                            "return an nnrecipe.Experiment (or raise)") from e
    except Exception as e:
        raise ExperimentError(f"{path}:{func_name}() raised {type(e).__name__}: {e}") from e
    from nnrecipe.experiment import Experiment

    if not isinstance(exp, Experiment):
        raise ExperimentError(f"{path}:{func_name}() returned {type(exp).__name__}, "
                              "not an nnrecipe.Experiment")
    name = exp.name or path.stem
    return exp, name
