"""``flagged.csv``: every sample a data check flagged, one row each, like cleanlab's
``Datalab.get_issues()`` but in long form (a sample flagged by two checks has two rows).

The data checks call :func:`record_flagged` with the rows behind a finding (only when the
finding is emitted); the runner's result carries them (``RunResult.flagged``, not in
``findings.json``, which stays small) and :func:`write_flagged` writes them next to the report.

Columns:

- ``split``, ``index``: the sample, by the dataset's own index (``train[123]`` in the report);
- ``code``: the finding code (``data-duplicates``, ``split-leakage``, ``label-errors``, ...);
- ``score`` and ``score_kind``: what the check measured for that sample (``label quality``:
  cleanlab's, 0-1, lower is more suspicious; ``distance``: to the partner, 0 for an exact
  copy; ``isolation``: distance to the nearest neighbours in multiples of the typical one);
- ``partner_split``, ``partner_index``: the other sample of a duplicate or leaked pair (for
  duplicates, the group's first member), empty otherwise;
- ``detail``: a short note (the suggested label, the kind of corruption).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

COLUMNS = ("split", "index", "code", "score", "score_kind", "partner_split", "partner_index",
           "detail")
STATE_KEY = "flagged"


def record_flagged(ctx: Any, code: str, split: str, indices: Iterable[Any], *,
                   scores: Sequence[Any] | None = None, score_kind: str = "",
                   partner_split: str | None = None, partners: Sequence[Any] | None = None,
                   details: Sequence[str] | None = None) -> int:
    """Add rows for ``flagged.csv`` (``indices``: the dataset's own indices). Returns the count."""
    rows: list[tuple[Any, ...]] = ctx.state.setdefault(STATE_KEY, [])
    n = 0
    for i, index in enumerate(indices):
        score = scores[i] if scores is not None else None
        partner = partners[i] if partners is not None else None
        rows.append((split, _int(index), code, _num(score), score_kind if score is not None else "",
                     partner_split if partner is not None else "",
                     _int(partner) if partner is not None else "",
                     details[i] if details is not None else ""))
        n += 1
    return n


def _int(v: Any) -> Any:
    try:
        return int(v)
    except (TypeError, ValueError):
        return v


def _num(v: Any) -> Any:
    if v is None:
        return ""
    f = float(v)
    return "" if math.isnan(f) else round(f, 6)


def write_flagged(rows: Sequence[Sequence[Any]], out_dir: Path) -> Path | None:
    """Write ``out_dir/flagged.csv`` (sorted by code, split, index); None when nothing was
    flagged (no file, so a stale one from an earlier run in the same folder is removed)."""
    path = out_dir / "flagged.csv"
    if not rows:
        path.unlink(missing_ok=True)
        return None
    order = sorted(rows, key=lambda r: (str(r[2]), str(r[0]), _sort_key(r[1])))
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(order)
    tmp.replace(path)
    return path


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, int) else (1, str(v))


def read_flagged(path: Path) -> list[dict[str, str]]:
    """The rows of a ``flagged.csv`` as dicts (for ``compare`` and tests)."""
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def export_flagged(rows: Sequence[Sequence[Any]], path: str | Path) -> Path:
    """``nnrecipe inspect --export FILE``: the flagged rows at ``FILE``, as CSV, or as Parquet
    when the name ends in ``.parquet`` (needs pyarrow). Written even when empty (the header
    only), so a pipeline step always finds its file."""
    from nnrecipe.errors import ConfigurationError

    path = Path(path)
    if path.suffix.lower() == ".parquet":
        try:
            import pandas as pd
            import pyarrow  # noqa: F401
        except ImportError as e:
            raise ConfigurationError(f"--export {path}: Parquet needs pyarrow (pip install "
                                     f"pyarrow), or export to a .csv ({e})") from e
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([list(r) for r in rows], columns=list(COLUMNS)).astype(str).to_parquet(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(sorted(rows, key=lambda r: (str(r[2]), str(r[0]), _sort_key(r[1]))))
    tmp.replace(path)
    return path
