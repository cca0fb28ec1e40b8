"""Lab conclusions over several seeds: fold the seeds' numbers into means with spreads, and
decide each criterion on its mean and its seed-to-seed spread.

One trajectory is not evidence: float results differ across CPU kernels and seeds, so a
conclusion drawn from one run can flip on another machine. Every topic is measured on
``SEEDS`` seeds (the page's seed and the next ones). :func:`combine` folds the per-seed
numbers — trees of dicts, lists, numbers and strings of the same shape — into one tree of the
same shape:

- a number becomes a :class:`Spread`: a ``float`` equal to the mean of the seeds' finite
  values, which keeps ``values`` (per seed) and ``sd``; ints that agree stay ints;
- a list of numbers becomes a :class:`Band` (a list of ``Spread``; seeds whose lists are
  shorter, e.g. a run stopped at NaN, leave the later points to the others);
- a ``findings`` list (rows with ``code``) becomes one row per code with ``seeds`` = on how
  many seeds it fired, and ``of`` = out of how many;
- strings and booleans take the value most seeds had; anything else that differs becomes a
  :class:`PerSeed` list;
- a key ending in ``_example`` keeps the first seed's value (a trajectory drawn as an
  example, which an average across seeds would smear).

A topic's ``conclude`` and ``draw`` read that tree as they read one seed's numbers (so texts
quote means, ``fmt`` prints ``mean ± sd``, and ``common.line`` draws a band of ± one standard
deviation). Quantities that do not commute with averaging (a best epoch, a jitter, a best
point of a grid) must be computed per seed inside ``measure`` so that their mean is averaged,
not recomputed from averaged curves. :func:`decide` then takes each criterion's value on every
seed and keeps the effect only when the mean clears the line by more than one standard
deviation (a yes/no criterion: on every seed of three).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from nnrecipe.lab._base import Conclusion, Criterion

# Three seeds is the least that gives a spread; a conclusion must clear it. More seeds cost
# proportionally (nnrecipe lab all ~3x a single seed; measured in the README).
SEEDS = 3


class Spread(float):
    """A mean over seeds (of the finite values) that keeps the per-seed values."""

    values: tuple[float, ...]

    def __new__(cls, values: Sequence[float]) -> Spread:
        vals = tuple(float(v) for v in values)
        finite = [v for v in vals if math.isfinite(v)]
        mean = math.fsum(finite) / len(finite) if finite else (vals[0] if vals else math.nan)
        obj = super().__new__(cls, mean)
        obj.values = vals
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (Spread, (self.values,))

    @property
    def finite(self) -> list[float]:
        return [v for v in self.values if math.isfinite(v)]

    @property
    def sd(self) -> float:
        """Sample standard deviation over the seeds (0 for one seed); infinite when some seeds
        are finite and others not (the spread of a run that diverged on one seed)."""
        if 0 < len(self.finite) < len(self.values):
            return math.inf
        f = self.finite
        return statistics.stdev(f) if len(f) > 1 else 0.0

    @property
    def nonfinite(self) -> int:
        return len(self.values) - len(self.finite)


class Band(list):  # type: ignore[type-arg]
    """A curve averaged over seeds: a list of :class:`Spread`, with ``lo``/``hi`` (mean ± one
    standard deviation) for drawing a band."""

    @property
    def lo(self) -> list[float]:
        return [float(v) - _finite_sd(v) for v in self]

    @property
    def hi(self) -> list[float]:
        return [float(v) + _finite_sd(v) for v in self]


def with_sd(mean: float, sd: float) -> Spread:
    """A ``Spread`` with the given mean and standard deviation (two pseudo-values
    ``mean ± sd/√2``), for curves derived from averaged ones (a smoothed band)."""
    if not math.isfinite(mean) or not sd or not math.isfinite(sd):
        return Spread([mean])
    h = sd / math.sqrt(2)
    return Spread([mean - h, mean + h])


class PerSeed(list):  # type: ignore[type-arg]
    """Values that differ between seeds and have no mean (one per seed)."""


def _finite_sd(v: Any) -> float:
    sd = getattr(v, "sd", 0.0)
    return sd if math.isfinite(sd) else 0.0


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _mode(values: Sequence[Any]) -> Any:
    """The most common value; ties go to the earliest seed."""
    counts = Counter(values)
    best = max(counts.values())
    return next(v for v in values if counts[v] == best)


def _combine_findings(rows: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for seed_rows in rows:
        for code in dict.fromkeys(r["code"] for r in seed_rows):
            first = next(r for r in seed_rows if r["code"] == code)
            if code not in out:
                out[code] = {**first, "seeds": 0, "of": len(rows)}
            out[code]["seeds"] += 1
    return list(out.values())


def _numbers(values: Sequence[Any]) -> bool:
    return all(v is None or _is_number(v) for v in values) and any(_is_number(v) for v in values)


def _number_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(x is None or _is_number(x) for x in v)


def combine(per_seed: Sequence[Any], key: str = "") -> Any:
    """Fold the same-shaped numbers of several seeds into one tree (see the module doc)."""
    values = list(per_seed)
    if len(values) == 1:
        return values[0]
    first = values[0]
    if all(v is None for v in values):
        return None
    if all(type(v) is type(first) and v == first for v in values[1:]):
        return first  # the same on every seed (sizes, rates, labels): nothing to average
    if key.endswith("_example"):
        return first
    if key == "findings" and all(isinstance(v, list) for v in values):
        return _combine_findings(values)
    if all(isinstance(v, bool) for v in values):
        return _mode(values)
    if _numbers(values):
        nums = [v for v in values if v is not None]
        if len(nums) * 2 <= len(values):  # most seeds had nothing here
            return None
        if all(isinstance(v, int) for v in nums) and len(set(nums)) == 1:
            return nums[0]
        return Spread(nums)
    if all(isinstance(v, str) for v in values):
        return _mode(values)
    if all(isinstance(v, dict) for v in values):
        keys = [k for k in first if all(k in v for v in values)]
        return {k: combine([v[k] for v in values], str(k)) for k in keys}
    if all(_number_list(v) for v in values) and any(len(v) for v in values):
        longest = max(len(v) for v in values)
        out = Band()
        for i in range(longest):
            col = [v[i] for v in values if i < len(v) and v[i] is not None]
            out.append(Spread(col) if col else Spread([math.nan]))
        return out
    if all(isinstance(v, (list, tuple)) for v in values) and len({len(v) for v in values}) == 1:
        return [combine([v[i] for v in values], key) for i in range(len(first))]
    if all(v == first for v in values):
        return first
    return PerSeed(values)


def decide(per_seed: Sequence[Conclusion], combined: Conclusion, seeds: Sequence[int]
           ) -> Conclusion:
    """The conclusion over seeds: ``combined``'s text and observations (read from the folded
    numbers), with every criterion's value replaced by the :class:`Spread` of its per-seed
    values; shown only when ``combined`` shows the effect and every criterion clears its line
    by more than one standard deviation across seeds."""
    seeds = list(seeds)
    criteria: list[Criterion] = []
    for i, c in enumerate(combined.criteria):
        vals = []
        for conc in per_seed:
            match = next((x for x in conc.criteria if x.name == c.name), None)
            if match is None and len(conc.criteria) == len(combined.criteria):
                match = conc.criteria[i]  # a name that quotes a number: the same position
            vals.append(float(match.value) if match is not None else math.nan)
        criteria.append(Criterion(c.name, Spread(vals), c.op, c.threshold, c.log))
    failed = [c for c in criteria if not c.holds]
    shown = combined.shown and not failed
    text = combined.text
    if combined.shown and failed:
        text = (f"Not shown over seeds {_seed_range(seeds)}: the mean of the runs points the "
                f"expected way, but " + "; ".join(_why(c) for c in failed)
                + " — the effect does not clear the seed-to-seed spread.")
    elif failed and not combined.shown:
        text = f"{combined.text} (Over seeds {_seed_range(seeds)}: " + "; ".join(
            _why(c) for c in failed) + ".)"
    return Conclusion(shown, text, combined.observations, criteria, seeds)


def _seed_range(seeds: Sequence[int]) -> str:
    return f"{seeds[0]}–{seeds[-1]}" if list(seeds) == list(range(seeds[0], seeds[-1] + 1)) \
        else ", ".join(map(str, seeds))


def _why(c: Criterion) -> str:
    v = c.value
    if isinstance(v, Spread) and c.threshold == 0.5 and all(x in (0.0, 1.0) for x in v.values):
        return f"{c.name} held on {int(sum(v.values))} of {len(v.values)} seeds"
    return f"{c.name} {fmt_criterion(c)} against {c.op} {c.threshold:.3g}"


def fmt_criterion(c: Criterion) -> str:
    """A criterion's value over seeds: ``mean ± sd``, or for a ratio ``geometric mean ×/÷
    factor``."""
    if not c.log:
        return fmt_spread(c.value)
    center = _plain(c.center, 3)
    sd = c.sd
    if sd == 0 or not isinstance(c.value, Spread) or len(c.value.values) < 2:
        return center
    return f"{center} ×/÷ {_plain(math.exp(sd), 2) if math.isfinite(sd) else '∞'}"


def fmt_spread(v: Any, digits: int = 3) -> str:
    """``mean ± sd`` (and how many seeds were not finite), or the plain number."""
    x = float(v)
    base = _plain(x, digits)
    if not isinstance(v, Spread) or len(v.values) < 2:
        return base
    sd = v.sd
    text = base if sd == 0 else f"{base} ± {_plain(sd, 2) if math.isfinite(sd) else '∞'}"
    if 0 < v.nonfinite < len(v.values) and math.isfinite(x):
        text += f" ({v.nonfinite} of {len(v.values)} seeds not finite)"
    return text


def _plain(v: float, digits: int) -> str:
    if not math.isfinite(v):
        return str(v)
    if v == 0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:.{digits}g}"
    return f"{v:.2e}"


def criteria_rows(conclusion: Conclusion) -> list[dict[str, Any]]:
    """The criteria as rows for a page: name, the line, per-seed values, mean ± sd, held."""
    rows = []
    for c in conclusion.criteria:
        v = c.value
        per = list(v.values) if isinstance(v, Spread) else [float(v)]
        rows.append({"name": c.name, "line": f"{c.op} {c.threshold:.3g}",
                     "per_seed": [_plain(x, 3) for x in per], "value": fmt_criterion(c),
                     "holds": c.holds})
    return rows
