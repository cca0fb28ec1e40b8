"""Early stopping: the criteria on scripted sequences (Lightning style), and in fit()."""

import math

import pytest
import torch

from nnrecipe.core.context import Context
from nnrecipe.core.fit import fit
from nnrecipe.errors import ConfigurationError
from nnrecipe.train.stopping import (
    EarlyStopping,
    StoppingConfig,
    generalization_loss,
    stopping_verdict,
    training_progress,
)
from tests.toys import classification_experiment
from tests.train.broken import tiny_data_big_model

ONLY_PATIENCE = dict(gl_alpha=None, pq_alpha=None, smoothing=0.0, min_delta=0.0, relative=False)


def first_stop(values: list[float], cfg: StoppingConfig, train: list[float] | None = None
               ) -> tuple[int | None, str]:
    train = train or [1.0] * len(values)
    for n in range(1, len(values) + 1):
        v = stopping_verdict(values[:n], train[:n], cfg)
        if v.stop:
            return n, v.criterion
    return None, ""


@pytest.mark.parametrize("values, patience, expected", [
    ([5, 4, 3, 2, 1, 0.5], 2, None),
    ([5, 4, 4, 4, 4], 3, 5),
    ([5, 4, 4.5, 4.2, 3.9, 4, 4, 4], 3, 8),
    ([5, 6, 7, 8], 1, 2),
])
def test_patience(values: list[float], patience: int, expected: int | None) -> None:
    assert first_stop(values, StoppingConfig(patience=patience, **ONLY_PATIENCE))[0] == expected


def test_min_delta_absolute_and_relative() -> None:
    values = [1.0, 0.99, 0.98, 0.97, 0.96, 0.95]
    abs_cfg = StoppingConfig(patience=2, gl_alpha=None, pq_alpha=None, smoothing=0.0,
                             min_delta=0.05, relative=False)
    assert first_stop(values, abs_cfg)[0] == 3  # 1% steps never beat a 0.05 delta
    rel_cfg = StoppingConfig(patience=2, gl_alpha=None, pq_alpha=None, smoothing=0.0,
                             min_delta=0.005, relative=True)
    assert first_stop(values, rel_cfg)[0] is None  # each step is a 1% improvement


def test_smoothing_rides_out_a_noisy_epoch() -> None:
    values = [1.0, 0.8, 0.65, 0.7, 0.55, 0.5, 0.45]
    raw = StoppingConfig(patience=1, **ONLY_PATIENCE)
    assert first_stop(values, raw)[0] == 4
    smooth = StoppingConfig(patience=1, gl_alpha=None, pq_alpha=None, smoothing=0.5,
                            min_delta=0.0, relative=False)
    assert first_stop(values, smooth)[0] is None


def test_max_mode_for_accuracy() -> None:
    cfg = StoppingConfig(monitor="val_accuracy", mode="max", patience=2, gl_alpha=None,
                         pq_alpha=None, smoothing=0.0, min_delta=0.0)
    assert first_stop([0.5, 0.7, 0.8, 0.79, 0.8], cfg)[0] == 5


def test_prechelt_quantities() -> None:
    assert generalization_loss([1.0, 0.5, 0.6]) == pytest.approx(20.0)
    assert generalization_loss([1.0, 0.5]) == 0.0
    # strip of 5 epochs with training losses 1.1 .. 1.0: mean/min - 1 = 6% -> 60 per mille
    assert training_progress([1.1, 1.05, 1.05, 1.0, 1.1, 1.0], 5) == pytest.approx(
        1000 * ((1.05 + 1.05 + 1.0 + 1.1 + 1.0) / 5 / 1.0 - 1))
    assert math.isnan(training_progress([1.0, 0.9], 5))


def test_gl_stops_at_first_epoch_over_alpha() -> None:
    cfg = StoppingConfig(patience=None, gl_alpha=5.0, pq_alpha=None)
    n, crit = first_stop([1.0, 0.8, 0.7, 0.72, 0.74, 0.8], cfg)
    assert (n, crit) == (5, "GL")  # 0.74 / 0.7 = +5.7%


def test_pq_waits_while_training_still_progresses() -> None:
    val = [1.0, 0.8, 0.7, 0.72, 0.73, 0.74, 0.75, 0.75, 0.76, 0.77]
    fast = [1.0, 0.6, 0.4, 0.3, 0.2, 0.14, 0.1, 0.07, 0.05, 0.035]  # P5 large
    slow = [1.0, 0.6, 0.45, 0.44, 0.44, 0.441, 0.44, 0.442, 0.44, 0.441]  # P5 ~ 1
    cfg = StoppingConfig(patience=None, gl_alpha=None, pq_alpha=0.5, strip=5)
    assert first_stop(val, cfg, fast) == (None, "")
    assert first_stop(val, cfg, slow) == (10, "PQ")  # checked at strip ends only (5, 10)
    assert first_stop(val, cfg, [0.5] * 10) == (5, "PQ")  # flat: no progress at all


def test_configuration_errors_name_the_valid_values() -> None:
    with pytest.raises(ConfigurationError, match="'min' or 'max'"):
        StoppingConfig(mode="up")
    with pytest.raises(ConfigurationError, match="valid"):
        StoppingConfig.from_options({"patients": 3})
    off = StoppingConfig.from_options(False)
    assert off.patience is None and off.gl_alpha is None and "off" in off.describe()


def test_in_fit_the_run_stops_and_the_best_epoch_is_restored() -> None:
    ctx = Context(tiny_data_big_model())
    model = ctx.fresh_model()
    stopper = EarlyStopping(StoppingConfig(patience=3, gl_alpha=10.0, pq_alpha=None))
    history = fit(ctx, model, callbacks=[stopper])
    assert stopper.stopped is not None and stopper.stopped.criterion == "GL"
    assert history.stopped_reason.startswith("early stopping (GL)")
    assert len(history.epochs) < 40
    assert history.best_epoch == stopper.stopped.best_epoch
    restored = ctx.evaluate(model, "val")["loss"]
    assert restored == pytest.approx(history.best_val_loss, rel=1e-5)


def test_without_validation_nothing_stops() -> None:
    exp = classification_experiment(val=None, epochs=3)
    stopper = EarlyStopping()
    history = fit(Context(exp), Context(exp).fresh_model(), callbacks=[stopper])
    assert stopper.stopped is None and history.stopped_reason == "completed"
    assert torch.is_tensor(next(iter(Context(exp).fresh_model().parameters())))
