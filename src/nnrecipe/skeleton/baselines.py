"""Dumb baselines and ``baseline-not-beaten``.

The recipe: "get dumb baselines" before trusting any number. Two are measured on the
evaluation split with the user's own loss: the constant predictor that knows only the
training targets (the majority class / class prior for classification, the targets' mean
for regression) and a linear model (scikit-learn, on the flattened, standardised inputs).
A short run of the model (see :mod:`nnrecipe.skeleton.shortrun`) must beat the constant
predictor. Not beating the linear model *yet* is normal for a short run of a deep model (the
demo's CNN needs ~3 epochs more), so it is shown in the table, not reported: it is the bar
full training must clear, which the train stage judges.

The scores go to ``ctx.state["baselines"]`` for the train stage's underfitting diagnosis::

    {"split": "val", "n": 360, "steps": 100,
     "majority": {"loss": 2.30, "accuracy": 0.10},     # or {"loss": .., "mse": ..}
     "linear":   {"loss": 0.12, "accuracy": 0.96},     # absent when not applicable
     "model":    {"loss": 0.09, "accuracy": 0.97}}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe.core import data as data_mod
from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.report.plots import COLORS, new_figure
from nnrecipe.skeleton._util import paired_improvement
from nnrecipe.skeleton.reference import class_prior
from nnrecipe.skeleton.shortrun import (
    EvalSplit,
    evaluation_split,
    flat_start,
    score,
    short_run,
)

# "Beaten" means better by more than two standard errors of the paired per-sample difference
# (loss or accuracy): a difference a short run's noise would produce less than ~2.5% of the
# time (one-sided), so a healthy model that is clearly better always passes, and a model
# that merely ties is reported.
Z = 2.0
LINEAR_TRAIN_LIMIT = 2000  # samples the linear model is fitted on
PRIOR_LIMIT = 20000  # samples the class prior / target mean is estimated from (SE < 0.4%)
LINEAR_MAX_DIM = 256  # wider inputs are reduced by PCA first (still linear in the input)


@dataclass
class Comparison:
    name: str
    beaten: bool
    loss_gain: float  # baseline loss - model loss (mean per sample)
    loss_se: float
    acc_gain: float | None = None
    acc_se: float | None = None


def beaten(model_losses: np.ndarray, base_losses: np.ndarray,
           model_correct: np.ndarray | None = None, base_correct: np.ndarray | None = None,
           z: float = Z, name: str = "") -> Comparison:
    """Pure decision: is the model significantly better than a baseline, by loss or by
    accuracy (paired per-sample differences)?"""
    gain, se = paired_improvement(model_losses, base_losses)
    ok = gain > 0 and gain > z * se
    acc_gain = acc_se = None
    if model_correct is not None and base_correct is not None:
        acc_gain, acc_se = paired_improvement(-model_correct, -base_correct)
        ok = ok or (acc_gain > 0 and acc_gain > z * acc_se)
    return Comparison(name, ok, gain, se, acc_gain, acc_se)


def constant_outputs(loss_fn: object, y_train: torch.Tensor, template: torch.Tensor
                     ) -> torch.Tensor | None:
    """The best input-independent outputs, from the training targets, shaped like
    ``template`` (the model's outputs on the evaluation split)."""
    per_sample = template.shape[1:]
    if isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)) and template.ndim >= 2 \
            and not y_train.is_floating_point():
        logp = class_prior(y_train, template.shape[1]).clamp(min=1e-8).log()
        logp = logp - torch.logsumexp(logp, 0)
        shape = [1, template.shape[1]] + [1] * (template.ndim - 2)
        return logp.reshape(shape).expand_as(template).clone()
    if y_train.numel() // max(1, len(y_train)) != template[0].numel():
        return None
    yt = y_train.float().reshape(len(y_train), *per_sample)
    if isinstance(loss_fn, (nn.BCEWithLogitsLoss, nn.BCELoss)):
        freq = yt.mean(0).clamp(1e-6, 1 - 1e-6)
        value = torch.logit(freq) if isinstance(loss_fn, nn.BCEWithLogitsLoss) else freq
    elif isinstance(loss_fn, nn.L1Loss):
        value = yt.median(dim=0).values
    elif isinstance(loss_fn, (nn.MSELoss, nn.SmoothL1Loss, nn.HuberLoss)) or \
            y_train.is_floating_point():
        value = yt.mean(0)
    else:
        return None
    return value.unsqueeze(0).expand_as(template).clone()


def train_sample(ctx: Context, split: EvalSplit, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset (at most ``limit``) of the samples the short runs train on: the
    first samples of a dataset may be sorted by class."""
    indices = split.train_indices
    if indices is None:
        indices = list(range(data_mod.dataset_len(ctx.dataset("train"), "train")))
    if len(indices) > limit:
        pick = np.random.default_rng(ctx.seed).choice(len(indices), limit, replace=False)
        indices = [indices[i] for i in sorted(pick.tolist())]
    return data_mod.stack_split(ctx.dataset("train"), "train", indices)


def _eval_inputs(ctx: Context, split: EvalSplit) -> torch.Tensor:
    if split.indices is None:
        return ctx.tensors(split.split)[0]
    return data_mod.stack_split(ctx.dataset(split.split), split.split, split.indices)[0]


def linear_outputs(ctx: Context, split: EvalSplit, template: torch.Tensor
                   ) -> tuple[torch.Tensor, str] | str:
    """Outputs of a linear model on the evaluation split, shaped like ``template``; or the
    reason it does not apply."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    loss_fn = ctx.experiment.loss
    X, y = train_sample(ctx, split, LINEAR_TRAIN_LIMIT)
    if not X.is_floating_point():
        return "integer inputs (token ids) have no meaningful linear model on raw values"
    classify = isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)) and template.ndim == 2 \
        and y.ndim == 1 and not y.is_floating_point()
    regress = ctx.task_type == "regression" and y.is_floating_point() \
        and y.numel() // max(1, len(y)) == template[0].numel()
    if not (classify or regress):
        return "a linear model is fitted for per-sample classes (CrossEntropy/NLL) or regression targets"
    Xtr = X.reshape(len(X), -1).double().numpy()
    Xev = _eval_inputs(ctx, split).reshape(-1, Xtr.shape[1]).double().numpy()
    steps: list[Any] = [StandardScaler()]
    name = "linear"
    # NaN/inf inputs (corrupt-samples names them): sklearn refuses them, so the linear model
    # learns from the finite training rows and fills evaluation gaps with training means.
    bad = ~np.isfinite(Xtr).all(1)
    if bad.all():
        return "every sampled training input holds NaN/inf"
    if bad.any():
        Xtr, y = Xtr[~bad], y[torch.from_numpy(~bad)]
        name += f" ({int(bad.sum())} training rows with NaN/inf left out)"
        ctx.record("linear_nonfinite_rows_dropped", int(bad.sum()))
    if not np.isfinite(Xev).all():
        from sklearn.impute import SimpleImputer

        ctx.record("linear_nonfinite_eval_rows", int((~np.isfinite(Xev).all(1)).sum()))
        Xev = np.where(np.isfinite(Xev), Xev, np.nan)
        steps.insert(0, SimpleImputer(strategy="mean", keep_empty_features=True))
    if Xtr.shape[1] > LINEAR_MAX_DIM:
        steps.append(PCA(n_components=min(LINEAR_MAX_DIM, len(Xtr) - 1),
                         svd_solver="randomized", random_state=ctx.seed))
        name = f"linear (on the first {LINEAR_MAX_DIM} principal components)"
    if classify:
        classes = np.unique(y.numpy())
        if len(classes) < 2:
            return "the training targets hold a single class"
        pipe = make_pipeline(*steps, LogisticRegression(max_iter=300))
        pipe.fit(Xtr, y.numpy())
        proba = pipe.predict_proba(Xev)
        full = np.full((len(Xev), template.shape[1]), 1e-8)
        full[:, pipe.classes_.astype(int)] = np.maximum(proba, 1e-8)
        logp = np.log(full / full.sum(1, keepdims=True))
        return torch.from_numpy(logp).float(), name
    pipe = make_pipeline(*steps, Ridge(alpha=1.0))
    pipe.fit(Xtr, y.reshape(len(y), -1).double().numpy())
    pred = pipe.predict(Xev)
    return torch.from_numpy(np.asarray(pred)).float().reshape(template.shape), name


class BaselineNotBeaten(Check):
    code = "baseline-not-beaten"
    stage = "skeleton"
    severity = Severity.WARNING
    title = "A short training run beats the dumb baselines"
    fix = ("A model that cannot beat a constant prediction after a short run is not learning "
           "from the inputs: check that labels match inputs (no shuffling of one without the "
           "other), that the inputs reach the model, and the learning rate (`nnrecipe lr`). "
           "If your model is slow to start, give it more steps: "
           "options={'short_run_steps': N}.")
    order = 50
    min_train_samples = 2  # one to train on, one held out when there is no val split
    emits = ("class-imbalance",)

    def run(self, ctx: Context) -> list[Finding]:
        split = evaluation_split(ctx)
        model_run = short_run(ctx)
        out, y = model_run.outputs, model_run.targets
        y_train = train_sample(ctx, split, PRIOR_LIMIT)[1]
        results: dict[str, dict[str, Any]] = {}
        comparisons: list[Comparison] = []
        const = constant_outputs(ctx.experiment.loss, y_train, out)
        const_name = "majority class" if ctx.task_type == "classification" else "mean target"
        if const is not None:
            m, ps, corr = score(ctx, const, y)
            results["majority"] = {**m, "kind": const_name}
            comparisons.append(beaten(model_run.per_sample, ps, model_run.correct, corr,
                                      name="majority"))
        lin = linear_outputs(ctx, split, out)
        if isinstance(lin, str):
            ctx.record("linear_skipped", lin)
        else:
            lin_out, lin_name = lin
            m, ps, corr = score(ctx, lin_out, y)
            results["linear"] = {**m, "kind": lin_name}
            comparisons.append(beaten(model_run.per_sample, ps, model_run.correct, corr,
                                      name="linear"))
        results["model"] = {**model_run.metrics, "kind": f"your model, {model_run.steps} steps"}
        ctx.state["baselines"] = {"split": split.split, "n": len(y), "steps": model_run.steps,
                                  **{k: {kk: vv for kk, vv in v.items() if kk != "kind"}
                                     for k, v in results.items()}}
        for k, v in results.items():
            ctx.record(k, {kk: vv for kk, vv in v.items() if kk != "kind"})
        ctx.record("evaluated_on", split.label)
        self._table(ctx, results, comparisons, split)
        if any(not c.beaten for c in comparisons if c.name == "majority"):
            self._plot(ctx, results)  # the table says it all when the model wins
        found = self._findings(ctx, results, comparisons, model_run.steps, split,
                               flat_start(model_run.step_losses))
        if any(f.code == self.code and f.severity is Severity.WARNING for f in found):
            found += self._imbalance(ctx, y_train, out)
        return found

    def _imbalance(self, ctx: Context, y_train: torch.Tensor, out: torch.Tensor
                   ) -> list[Finding]:
        """The majority baseline not beaten because the model settled on the majority class
        of imbalanced training labels (abhuse/polyloss-pytorch#5: 86/14, every prediction the
        majority): name that cause. Thresholds by reasoning: an imbalance of 3:1 or more
        makes "always the majority" a strong local optimum of an unweighted loss, and 95% of
        predictions on one class is that optimum reached (a model that learns the inputs
        spreads its predictions like the labels)."""
        if ctx.task_type != "classification" or y_train.is_floating_point() or out.ndim != 2:
            return []
        prior = class_prior(y_train, out.shape[1])
        present = prior[prior > 0]
        if len(present) < 2:
            return []
        ratio = float(present.max() / present.min())
        majority = int(prior.argmax())
        share = float((out.argmax(1) == majority).float().mean())
        ctx.record("imbalance_ratio", ratio)
        ctx.record("majority_prediction_share", share)
        if ratio < 3.0 or share < 0.95:
            return []
        return [self.finding(
            f"the classes are imbalanced {ratio:.1f}:1 in training and after the short run the "
            f"model predicts the majority class ({majority}) for {share:.0%} of the samples: an "
            "unweighted loss lets it settle there",
            {"imbalance_ratio": ratio, "majority_class": majority,
             "majority_prediction_share": share}, code="class-imbalance",
            severity=Severity.WARNING,
            fix="Weight the loss by inverse class frequency (CrossEntropyLoss(weight=...)) or "
                "oversample the rare classes (WeightedRandomSampler); initialise the output "
                "bias to the log class prior; judge with balanced accuracy.")]

    def _findings(self, ctx: Context, results: dict[str, dict[str, Any]],
                  comparisons: list[Comparison], steps: int, split: EvalSplit,
                  flat: bool = False) -> list[Finding]:
        metric = "accuracy" if ctx.task_type == "classification" else "mse"
        findings = []
        for c in comparisons:
            # Only the constant predictor must be beaten by a short run; the linear model is
            # the bar for full training (the train stage reads it from ctx.state).
            if c.beaten or c.name != "majority":
                continue
            if not math.isfinite(c.loss_gain):
                # the short run's losses are NaN/inf (NaN inputs, a rate that diverges): no
                # comparison means anything; loss-nonfinite and corrupt-samples say why
                ctx.record("skipped", "the model's loss on the evaluation split is not finite")
                continue
            base, model = results[c.name], results["model"]
            evidence = {"baseline": c.name, "baseline_scores": base, "model_scores": model,
                        "steps": steps, "evaluated_on": split.label,
                        "n": ctx.state["baselines"]["n"], "loss_gain": c.loss_gain,
                        "loss_gain_se": c.loss_se, "accuracy_gain": c.acc_gain,
                        "accuracy_gain_se": c.acc_se, "z": Z}
            scores = f"loss {model['loss']:.4g} vs {base['loss']:.4g}"
            if metric in model and metric in base:
                scores += f", {metric} {model[metric]:.4g} vs {base[metric]:.4g}"
            msg = (f"after a short run of {steps} steps the model does not beat the "
                   f"{base['kind']} baseline on {split.label} ({scores}; required: better by "
                   f"{Z:g} standard errors of the paired per-sample difference)")
            if c.name == "majority" and flat:
                evidence["flat_start"] = True
                findings.append(self.finding(
                    msg + "; its training loss has not moved in these steps: too early to "
                    "tell a bug from a slow start", evidence, severity=Severity.INFO,
                    fix="Give the short run more steps (options={'short_run_steps': N}) or "
                    "check the rate with `nnrecipe lr`; if the loss never moves, see "
                    "cannot-overfit-batch."))
            elif c.name == "majority":
                findings.append(self.finding(msg, evidence))
        return findings

    def _table(self, ctx: Context, results: dict[str, dict[str, Any]],
               comparisons: list[Comparison], split: EvalSplit) -> None:
        metric = "accuracy" if ctx.task_type == "classification" else "mse"
        beat = {c.name: c.beaten for c in comparisons}
        rows = []
        for name, r in results.items():
            verdict = "" if name == "model" else ("yes" if beat.get(name) else
                                                  "NO" if name == "majority" else "not yet")
            rows.append([r["kind"], _fmt(r.get("loss")), _fmt(r.get(metric)), verdict])
        ctx.add_table(f"Dumb baselines vs your model ({split.label})",
                      ["predictor", "loss", metric, "beaten by the model"], rows)

    def _plot(self, ctx: Context, results: dict[str, dict[str, Any]]) -> None:
        metric = "accuracy" if ctx.task_type == "classification" else "mse"
        names = list(results)
        fig, axes = new_figure(width=8, height=3, ncols=2)
        colors = [COLORS[0] if n == "model" else COLORS[5] for n in names]
        axes[0].bar(names, [results[n].get("loss", np.nan) for n in names], color=colors)
        axes[0].set(title="loss (lower is better)")
        axes[1].bar(names, [results[n].get(metric, np.nan) for n in names], color=colors)
        axes[1].set(title=f"{metric} ({'higher' if metric == 'accuracy' else 'lower'} is better)")
        for ax in axes:
            ax.grid(alpha=0.3, axis="y")
        ctx.add_figure("Dumb baselines vs a short run of your model", fig)


def _fmt(v: Any) -> str:
    return "" if v is None else f"{v:.4g}"
