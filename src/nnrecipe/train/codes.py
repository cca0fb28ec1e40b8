"""The train stage's finding codes (one :class:`~nnrecipe.core.registry.Declared` class
each): declaring them registers them in the catalogue."""

from __future__ import annotations

from nnrecipe.core.findings import Severity
from nnrecipe.core.registry import Declared
from nnrecipe.train.nonfinite import LossNonfinite


class _Train(Declared):
    stage = "train"


class LossDiverging(_Train):
    code = "loss-diverging"
    severity = Severity.ERROR
    title = "The training loss climbs instead of falling"
    fix = ("Lower the learning rate (3-10x), clip gradients, and check the loss sign and the "
           "optimizer's direction (a maximising loss or a wrong sign diverges at any LR).")


class LrTooHigh(_Train):
    code = "lr-too-high"
    severity = Severity.WARNING
    title = "The learning rate is too high: the loss spikes or oscillates"
    fix = ("Lower the learning rate 3-10x (run `nnrecipe lr` for a range test), add warmup, "
           "clip gradients, or use a larger batch.")


class LrTooLow(_Train):
    code = "lr-too-low"
    severity = Severity.WARNING
    title = "The learning rate is too low: the loss falls too slowly"
    fix = ("Raise the learning rate (run `nnrecipe lr` for a range test); Adam at 3e-4 is a "
           "safe start.")


class LossPlateau(_Train):
    code = "loss-plateau"
    severity = Severity.WARNING
    title = "The loss plateaus"
    fix = ("A loss stuck at its starting value points at the initialisation (dead or saturated "
           "units, vanishing gradients) or the learning rate; check those findings first.")


class Overfitting(_Train):
    code = "overfitting"
    severity = Severity.WARNING
    title = "The model overfits: validation loss rises while training loss falls"
    fix = ("Regularise: more data (or augmentation), weight decay, dropout, a smaller model, "
           "early stopping at the best epoch.")


class Underfitting(_Train):
    code = "underfitting"
    severity = Severity.WARNING
    title = "The model underfits: training loss stays far above what it can reach"
    fix = ("Use a bigger model, train longer, reduce regularisation, check that the inputs "
           "carry the signal.")


class ValBelowTrain(_Train):
    code = "val-below-train"
    severity = Severity.INFO
    title = "The validation loss is below the training loss"
    fix = "Compare both losses the same way (eval mode, end of epoch) before reading the gap."


class WeightsFluctuating(_Train):
    code = "weights-fluctuating"
    severity = Severity.WARNING
    title = "Weights fluctuate: validation results swing from epoch to epoch"
    fix = ("Lower the learning rate or decay it, use a larger batch, average the weights "
           "(EMA or torch.optim.swa_utils.AveragedModel), clip gradients.")


class ExplodingGradients(_Train):
    code = "exploding-gradients"
    severity = Severity.WARNING
    title = "Gradients explode"
    fix = ("Clip gradients by norm (torch.nn.utils.clip_grad_norm_), lower the learning rate, "
           "add normalisation layers, scale the targets.")


class VanishingGradients(_Train):
    code = "vanishing-gradients"
    severity = Severity.WARNING
    title = "Gradients vanish before they reach the first layers"
    fix = ("Use ReLU/GELU instead of sigmoid/tanh, He (Kaiming) initialisation, add "
           "normalisation (BatchNorm/LayerNorm) or skip connections.")


class DeadRelu(_Train):
    code = "dead-relu"
    severity = Severity.WARNING
    title = "ReLU units are dead (never active)"
    fix = ("Initialise biases at zero (or slightly positive), lower the learning rate, "
           "standardise the inputs, or use LeakyReLU/GELU.")


class SaturatedActivations(_Train):
    code = "saturated-activations"
    severity = Severity.WARNING
    title = "tanh/sigmoid units are saturated"
    fix = ("Standardise the inputs, use Xavier (Glorot) initialisation, add normalisation "
           "before the activation, or switch to ReLU/GELU.")


class UpdateRatio(_Train):
    code = "update-ratio"
    severity = Severity.WARNING
    title = "Update-to-weight ratio far from ~1e-3"
    fix = ("Scale the learning rate so that each step changes the weights by ~0.1% "
           "(||lr*update|| / ||w|| ~ 1e-3).")


class LrScheduleMisstepped(_Train):
    code = "lr-schedule-misstepped"
    severity = Severity.WARNING
    title = "The learning-rate schedule is stepped at the wrong granularity"
    fix = ("Step a per-epoch scheduler once per epoch (after the epoch's loop), a per-step one "
           "once per optimizer step; size warmup and decay in the unit they are stepped in.")


class ValMetricInconsistent(_Train):
    code = "val-metric-inconsistent"
    severity = Severity.WARNING
    title = "The validation metric contradicts the validation loss"
    fix = ("Compute the metric from the same batches as the loss: predictions and labels from "
           "one loader pass (zip of two loaders, or a shuffled validation loader, pairs "
           "predictions with other samples' labels).")


TRAIN_CODES: tuple[str, ...] = (
    LossNonfinite.code, LossDiverging.code, ExplodingGradients.code,  # type: ignore[assignment]
    VanishingGradients.code, DeadRelu.code, SaturatedActivations.code, UpdateRatio.code,
    LrTooHigh.code, LrTooLow.code, LossPlateau.code, Overfitting.code, Underfitting.code,
    ValBelowTrain.code, WeightsFluctuating.code, LrScheduleMisstepped.code,
    ValMetricInconsistent.code)
