"""``augmentation-active``: the same index returns a different tensor.

The recipe: "don't data augment at this stage". Augmentation is a regulariser, for later; while
the skeleton is being verified it adds noise to every comparison and hides bugs (a wrong
label shows up as "hard" instead of "wrong"). Reading a few indices twice tells whether the
dataset transforms samples randomly. It is advice at this stage, so the finding is info.

The val and test splits are read twice too: evaluation data must come back the same every
time. A random transform there (a training transform attached before the split, issue 13's
real case) makes each epoch's metric a different draw: that is a warning.
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
        if all(isinstance(ds, torch.utils.data.TensorDataset) for ds in self._splits(ctx).values()):
            return "the datasets are fixed tensor datasets: nothing can be augmented"
        return None

    @staticmethod
    def _splits(ctx: Context) -> dict[str, object]:
        return {s: ctx.dataset(s) for s in ("train", "val", "test") if ctx.has_split(s)}

    def _read_twice(self, ctx: Context, split: str, ds: object
                    ) -> tuple[list[int], list[float], list[tuple[torch.Tensor, torch.Tensor]]]:
        n = data_mod.dataset_len(ds, split)
        indices = sorted(np.random.default_rng(ctx.seed).choice(
            n, size=min(N_INDICES, n), replace=False).tolist())
        diffs, pairs = [], []
        for i in indices:
            x1, _ = data_mod.get_sample(ds, i, split)
            x2, _ = data_mod.get_sample(ds, i, split)
            d = float((x1.double() - x2.double()).abs().max()) if x1.shape == x2.shape else np.inf
            diffs.append(d)
            pairs.append((x1, x2))
        return indices, diffs, pairs

    def run(self, ctx: Context) -> list[Finding]:
        findings: list[Finding] = []
        for split, ds in self._splits(ctx).items():
            if isinstance(ds, torch.utils.data.TensorDataset):
                continue
            indices, diffs, pairs = self._read_twice(ctx, split, ds)
            key = "" if split == "train" else f"{split}_"
            ctx.record(f"{key}indices", indices)
            ctx.record(f"{key}max_abs_diff", max(diffs, default=0.0))
            changed = augmentation_verdict(diffs)
            if not changed:
                continue
            changed_idx = [indices[i] for i in changed]
            evidence = {"split": split, "indices_checked": indices,
                        "indices_changed": changed_idx,
                        "max_abs_diff": [diffs[i] for i in changed]}
            head = (f"{len(changed)} of {len(indices)} {split} samples came back different "
                    f"when read twice (indices {changed_idx[:8]}, largest difference "
                    f"{max(diffs):.3g})")
            if split == "train":
                self._plot(ctx, [pairs[i] for i in changed], changed_idx)
                findings.append(self.finding(
                    f"{head}: the dataset applies random augmentation. The skeleton checks ran "
                    "with it on.", evidence))
            else:
                # Evaluation data must be read the same way every time: a random transform on
                # val/test makes every epoch's metric a different random draw (early stopping
                # and model selection chase the noise) and scores the model on distorted
                # inputs. Not advice: a warning.
                findings.append(self.finding(
                    f"{head}: the {split} data are randomly augmented (a training transform "
                    "attached before the split, or shared with the evaluation set), so its "
                    "metrics change from read to read and score distorted inputs", evidence,
                    severity=Severity.WARNING,
                    fix=(f"Give the {split} set its own deterministic transform (resize/"
                         "centre-crop and normalise only); split the raw dataset first, then "
                         "wrap each part with its transform.")))
        return findings

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
