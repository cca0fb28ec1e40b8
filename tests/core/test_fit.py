import math

import torch

from nnrecipe.core.context import Context
from nnrecipe.core.fit import Callback, fit
from tests.toys import classification_experiment


def test_fit_trains_validates_and_keeps_the_best_epoch() -> None:
    ctx = Context(classification_experiment(epochs=4))
    model = ctx.fresh_model()
    h = fit(ctx, model)
    assert len(h.epochs) == 4 and h.stopped_reason == "completed"
    assert h.train_losses()[-1] < h.train_losses()[0]
    assert h.best_epoch is not None and math.isfinite(h.best_val_loss)
    assert h.val_metric("accuracy")[-1] > 0.8
    assert h.steps == 4 * math.ceil(300 / 32)


def test_callback_can_stop_and_clipping_bounds_the_update() -> None:
    class StopAt2(Callback):
        def on_epoch_end(self, record, history, model):  # noqa: ANN001
            return "enough" if record.epoch == 2 else None

    ctx = Context(classification_experiment(epochs=5))
    h = fit(ctx, ctx.fresh_model(), callbacks=[StopAt2()])
    assert h.stopped_reason == "enough" and len(h.epochs) == 2

    # With SGD lr=1 and clipping at 1e-3 each update has norm <= 1e-3.
    model = ctx.fresh_model()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    fit(ctx, model, optimizer=opt, grad_clip=1e-3, max_steps=1, val_split=None)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm() <= 1e-3 * 1.001


def test_nonfinite_loss_stops_training() -> None:
    ctx = Context(classification_experiment(optimizer=lambda p: torch.optim.SGD(p, lr=1e8)))
    h = fit(ctx, ctx.fresh_model(), epochs=3)
    assert h.stopped_reason.startswith("non-finite loss")
