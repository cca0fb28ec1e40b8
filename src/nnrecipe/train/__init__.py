"""The train stage: watching every step of training.

Three layers, kept apart (measure → decide → render):

**Measure** — :class:`Monitor` (``nnrecipe.train.monitor``) hooks a model and its optimizer
and fills a :class:`Recording` with CPU numbers: per-step loss and LR; per-layer gradient
norms (every step, one fused reduction), parameter norms and update/weight ratios (every
``update_every`` steps), dead-ReLU and saturated tanh/sigmoid fractions (forward hooks armed
every ``activation_every`` steps); epoch entries (train loss, val metrics) and outputs on a
fixed batch; the first non-finite value with the layer that produced it (the update carrying
it is dropped before it reaches the weights). It is a :func:`nnrecipe.core.fit.fit` callback::

    from nnrecipe.core.fit import fit
    from nnrecipe.train import Monitor, EarlyStopping, StoppingConfig, diagnose

    mon = Monitor()                                   # MonitorConfig() for the schedule
    stop = EarlyStopping(StoppingConfig(patience=5, gl_alpha=10))
    history = fit(ctx, model, callbacks=[mon, stop])  # attaches/detaches the hooks itself
    result = diagnose(mon.recording)                  # -> Diagnosis(findings, verdicts, ...)

Standalone: ``Monitor().attach(model, opt)`` / ``record_loss(loss)`` per step /
``record_epoch(val={"loss": ...})`` / ``detach()`` (or ``with Monitor().attach(...)``).

**Decide** — ``nnrecipe.train.detectors``: one :class:`~nnrecipe.core.registry.Declared`
class per finding code, and a pure ``*_verdict`` function per rule over plain numbers
(``diverging_verdict(losses)``, ``overfitting_verdict(train, val)``,
``vanishing_verdict(names, relative_grads)``, ...). :func:`diagnose` runs them all over a
recording (``Extras`` adds baselines, end-of-epoch probes, augmentation/dropout flags) and
returns each code at most once. Early stopping (patience on a smoothed metric with absolute
or relative ``min_delta``, Prechelt's GL and PQ) is ``nnrecipe.train.stopping``:
``stopping_verdict(metric, train, config) -> StopVerdict(stop, criterion, reason)`` and the
:class:`EarlyStopping` callback.

**Render** — ``nnrecipe.train.plots`` (Figures, no pyplot) and the stage's checks in
``nnrecipe.train.stage``: ``training`` (the run, learning-curve findings, checkpoint),
``gradients`` and ``activations``. See that module for ``ctx.state["train"]``.

For users with their own loop: :func:`nnrecipe.watch` (``nnrecipe.train.watch``) and the
Lightning callback ``nnrecipe.train.lightning.NNRecipeCallback`` (``pip install
nnrecipe[lightning]``).

Codes: ``loss-nonfinite``, ``loss-diverging``, ``exploding-gradients``,
``vanishing-gradients``, ``dead-relu``, ``saturated-activations``, ``update-ratio``,
``lr-too-high``, ``lr-too-low``, ``loss-plateau``, ``overfitting``, ``underfitting``,
``val-below-train``, ``weights-fluctuating``.
"""

from nnrecipe.train import detectors, distributed, nonfinite, stage  # noqa: F401  (registers the codes/checks)
from nnrecipe.train.detectors import TRAIN_CODES, Diagnosis, Extras, diagnose
from nnrecipe.train.monitor import Monitor, MonitorConfig, Recording, Series
from nnrecipe.train.stopping import EarlyStopping, StoppingConfig, StopVerdict, stopping_verdict
from nnrecipe.train.watch import Watcher, watch

__all__ = [
    "TRAIN_CODES", "Diagnosis", "EarlyStopping", "Extras", "Monitor", "MonitorConfig",
    "Recording", "Series", "StopVerdict", "StoppingConfig", "Watcher", "diagnose",
    "stopping_verdict", "watch",
]
