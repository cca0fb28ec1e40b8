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


def test_the_best_checkpoint_is_on_disk_whatever_the_write_budget(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import nnrecipe.core.fit as fit_mod

    ctx = Context(classification_experiment(epochs=4))
    for share in (fit_mod.CHECKPOINT_SHARE, 0.0):  # 0: only the first write and the last
        monkeypatch.setattr(fit_mod, "CHECKPOINT_SHARE", share)
        path = tmp_path / f"best-{share}.pt"
        h = fit(ctx, ctx.fresh_model(), checkpoint=path)
        saved = torch.load(path, weights_only=True)
        assert saved["best_epoch"] == h.best_epoch and h.checkpoint_error is None
        assert all(torch.equal(saved["state_dict"][k], v) for k, v in h.best_state.items())


def test_an_interrupt_returns_the_partial_history_and_blocks_more_training(tmp_path) -> None:  # noqa: ANN001
    import pytest

    from nnrecipe.core.interrupts import Interrupted

    class CtrlCAtEpoch2(Callback):
        def on_epoch_end(self, record, history, model):  # noqa: ANN001
            if record.epoch == 2:
                raise Interrupted(15)

    ctx = Context(classification_experiment(epochs=5))
    h = fit(ctx, ctx.fresh_model(), callbacks=[CtrlCAtEpoch2()], keep_on_interrupt=True,
            checkpoint=tmp_path / "best.pt")
    assert h.interrupted and h.stopped_reason == "interrupted by SIGTERM at epoch 2 of 5 (step 20)"
    assert torch.load(tmp_path / "best.pt", weights_only=True)["best_epoch"] == h.best_epoch
    assert ctx.interruption is not None and ctx.interruption.signal == "SIGTERM"
    with pytest.raises(KeyboardInterrupt):  # a check that trains again stops at once
        fit(ctx, ctx.fresh_model())
