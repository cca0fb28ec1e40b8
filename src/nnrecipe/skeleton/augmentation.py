"""``augmentation-active``: the same index returns a different tensor.

The recipe: "don't data augment at this stage". Augmentation is a regulariser, for later; while
the skeleton is being verified it adds noise to every comparison and hides bugs (a wrong
label shows up as "hard" instead of "wrong"). Reading a few indices twice tells whether the
dataset transforms samples randomly. It is advice at this stage, so the finding is info.
"""

from __future__ import annotations

import numpy as np
import torch

from nnrecipe.core import data as data_mod
from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.report.plots import image_grid

N_INDICES = 8  # a random transform that fires with probability >= 0.3 is seen w.p. > 0.99
# Reading the same sample twice is exact unless something random happens: any difference
# above float32 rounding of a deterministic transform (0 in practice) counts.
ABS_TOL = 1e-6


def augmentation_verdict(max_abs_diffs: list[float], tol: float = ABS_TOL) -> list[int]:
    """Pure decision: the positions whose two reads differ."""
    return [i for i, d in enumerate(max_abs_diffs) if d > tol]


class AugmentationActive(Check):
    code = "augmentation-active"
    stage = "skeleton"
    severity = Severity.INFO
    title = "Samples are read without random augmentation"
    fix = ("Turn augmentation off while you build the skeleton and overfit (e.g. a flag on "
           "your dataset, or a separate un-augmented training set for nnrecipe check); add it "
           "back as a regulariser once the model overfits.")
    order = 6

    def applies(self, ctx: Context) -> str | None:
        ds = ctx.dataset("train")
        if isinstance(ds, torch.utils.data.TensorDataset):
            return "the training set is a fixed tensor dataset: nothing can be augmented"
        return None

    def run(self, ctx: Context) -> list[Finding]:
        ds = ctx.dataset("train")
        n = data_mod.dataset_len(ds, "train")
        indices = sorted(np.random.default_rng(ctx.seed).choice(
            n, size=min(N_INDICES, n), replace=False).tolist())
        diffs, pairs = [], []
        for i in indices:
            x1, _ = data_mod.get_sample(ds, i, "train")
            x2, _ = data_mod.get_sample(ds, i, "train")
            d = float((x1.double() - x2.double()).abs().max()) if x1.shape == x2.shape else np.inf
            diffs.append(d)
            pairs.append((x1, x2))
        ctx.record("indices", indices)
        ctx.record("max_abs_diff", max(diffs, default=0.0))
        changed = augmentation_verdict(diffs)
        if not changed:
            return []
        changed_idx = [indices[i] for i in changed]
        self._plot(ctx, [pairs[i] for i in changed], changed_idx)
        evidence = {"indices_checked": indices, "indices_changed": changed_idx,
                    "max_abs_diff": [diffs[i] for i in changed]}
        return [self.finding(
            f"{len(changed)} of {len(indices)} training samples came back different when read "
            f"twice (indices {changed_idx[:8]}, largest difference {max(diffs):.3g}): the "
            "dataset applies random augmentation. The skeleton checks ran with it on.", evidence)]

    def _plot(self, ctx: Context, pairs: list[tuple[torch.Tensor, torch.Tensor]],
              indices: list[int]) -> None:
        x = pairs[0][0]
        image_like = x.ndim == 3 and (x.shape[0] in (1, 3) or x.shape[-1] in (1, 3)) or x.ndim == 2
        if not image_like:
            return
        imgs, labels = [], []
        for (a, b), i in zip(pairs[:4], indices[:4], strict=False):
            imgs += [a.float().numpy(), b.float().numpy()]
            labels += [f"#{i} read 1", f"#{i} read 2"]
        ctx.add_figure("The same samples read twice", image_grid(np.stack(imgs), labels,
                                                                 ncols=8))
