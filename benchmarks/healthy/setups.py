"""The healthy setups: correct experiments a practitioner would call healthy.

Each function takes a ``seed`` (the data split or synthetic draw, the init and the batch
order all follow it) and returns an :class:`nnrecipe.Experiment`. The registry in
``benchmarks/healthy/__init__.py`` lists them; their docstrings say what each covers, and the
ones marked "look-alike" reproduce a healthy run that once raised a false alarm (issue 11).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe import Experiment

from . import data
from .models import (
    FlattenCE,
    ResCNN,
    RNNClassifier,
    SmallCNN,
    TinyTransformer,
    dropout_linear_bn,
    mlp,
)
from .registry import healthy


def _exp(name: str, seed: int, splits: dict[str, Any], model: Callable[..., nn.Module],
         loss: Any, optimizer: Callable[..., torch.optim.Optimizer] | None, *, batch_size: int,
         epochs: int, **kw: Any) -> Experiment:
    return Experiment(model=model, train=splits["train"], val=splits.get("val"),
                      test=splits.get("test"), loss=loss, optimizer=optimizer,
                      batch_size=batch_size, epochs=epochs, seed=seed, name=name, **kw)


def _adam(lr: float = 1e-3, **kw: Any) -> Callable[..., torch.optim.Optimizer]:
    return lambda p: torch.optim.Adam(p, lr=lr, **kw)


def _adamw(lr: float = 1e-3, wd: float = 1e-2) -> Callable[..., torch.optim.Optimizer]:
    return lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=wd)


def _sgd(lr: float, momentum: float = 0.9, **kw: Any) -> Callable[..., torch.optim.Optimizer]:
    return lambda p: torch.optim.SGD(p, lr=lr, momentum=momentum, **kw)


def _class_weights(y: np.ndarray) -> torch.Tensor:
    """Inverse class frequency, normalised to a mean of 1 (the usual re-weighting)."""
    counts = np.bincount(y).astype(np.float64)
    w = counts.sum() / (len(counts) * counts)
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def _binary(splits: dict[str, Any]) -> dict[str, Any]:
    return {k: (x, y.astype(np.float32).reshape(-1, 1)) for k, (x, y) in splits.items()}


# ================================================================ tabular classification


@healthy(quick=True)
def iris_mlp_adam(seed: int = 0) -> Experiment:
    """Iris (150 samples, 120 to train), a 32-32 MLP, Adam 1e-3, batch 16."""
    s = data.iris(seed)
    return _exp("iris-mlp-adam", seed, s, lambda: mlp(4, 3, 32), nn.CrossEntropyLoss(),
                _adam(1e-3), batch_size=16, epochs=40)


@healthy()
def iris_sgd_nesterov_step(seed: int = 0) -> Experiment:
    """Iris, SGD 0.05 with Nesterov momentum, the step schedule (x0.1 at 1/3 and 2/3)."""
    s = data.iris(seed)
    return _exp("iris-sgd-nesterov-step", seed, s, lambda: mlp(4, 3, 32), nn.CrossEntropyLoss(),
                _sgd(0.05, nesterov=True), batch_size=8, epochs=30,
                options={"schedule": "step"})


@healthy()
def wine_sgd_momentum(seed: int = 0) -> Experiment:
    """Wine (178 samples), SGD 0.01 + momentum 0.9, batch 16: a slow start, then it trains."""
    s = data.wine(seed)
    return _exp("wine-sgd-momentum", seed, s, lambda: mlp(13, 3, 32), nn.CrossEntropyLoss(),
                _sgd(0.01), batch_size=16, epochs=40)


@healthy(watch=True, quick=True)
def wine_bn_dropout_bs16(seed: int = 0) -> Experiment:
    """Look-alike: a small BatchNorm + dropout MLP at batch 16, 9 batches per epoch, reaching a
    low loss (noisy train-mode epoch means, validation accuracy ~1)."""
    s = data.wine(seed)
    return _exp("wine-bn-dropout-bs16", seed, s,
                lambda: mlp(13, 3, 32, bn=True, dropout=0.2), nn.CrossEntropyLoss(),
                _adam(1e-3), batch_size=16, epochs=40)


@healthy()
def breast_cancer_adamw(seed: int = 0) -> Experiment:
    """Breast cancer (569 samples), AdamW 1e-3 with weight decay 1e-2, batch 32."""
    s = data.breast_cancer(seed)
    return _exp("breast-cancer-adamw", seed, s, lambda: mlp(30, 2, 64), nn.CrossEntropyLoss(),
                _adamw(1e-3, 1e-2), batch_size=32, epochs=20)


@healthy(quick=True)
def breast_cancer_bce(seed: int = 0) -> Experiment:
    """Breast cancer as binary classification: one logit, BCEWithLogitsLoss, Adam 3e-4,
    batch 8."""
    s = _binary(data.breast_cancer(seed))
    return _exp("breast-cancer-bce", seed, s, lambda: mlp(30, 1, 32), nn.BCEWithLogitsLoss(),
                _adam(3e-4), batch_size=8, epochs=12, task="classification")


@healthy(watch=True, quick=True)
def digits_mlp_default(seed: int = 0) -> Experiment:
    """Look-alike: a plain 64-32-10 MLP with nnrecipe's default optimizer (Adam 3e-4)."""
    s = data.digits_flat(seed)
    return _exp("digits-mlp-default", seed, s, lambda: mlp(64, 10, [32]), nn.CrossEntropyLoss(),
                None, batch_size=64, epochs=30)


@healthy()
def digits_mlp_constant_features(seed: int = 0) -> Experiment:
    """Look-alike: flattened digits (several pixels are constant in the training split),
    standardised per feature (constant ones left at 0), Adam 1e-3, batch 32, a test split."""
    s = data.digits_flat(seed, test=0.2)
    return _exp("digits-mlp-constant-features", seed, s, lambda: mlp(64, 10, 64),
                nn.CrossEntropyLoss(), _adam(1e-3), batch_size=32, epochs=15)


@healthy()
def digits_dropout_linear_bn(seed: int = 0) -> Experiment:
    """Look-alike: Dropout(0.1) -> Linear -> BatchNorm (a small variance shift), Adam 1e-3."""
    s = data.digits_flat(seed)
    return _exp("digits-dropout-linear-bn", seed, s, lambda: dropout_linear_bn(64, 10),
                nn.CrossEntropyLoss(), _adam(1e-3), batch_size=64, epochs=20)


@healthy()
def digits_deep_sgd_slow_start(seed: int = 0) -> Experiment:
    """Look-alike: a 4-layer ReLU MLP, SGD 0.01 + momentum 0.9, batch 32: on some seeds the
    loss sits near its start for a few epochs, then trains to ~95% validation accuracy."""
    s = data.digits_flat(seed)
    return _exp("digits-deep-sgd-slow-start", seed, s, lambda: mlp(64, 10, 32, depth=4),
                nn.CrossEntropyLoss(), _sgd(0.01), batch_size=32, epochs=15)


@healthy()
def digits_mlp_label_smoothing(seed: int = 0) -> Experiment:
    """Digits MLP with label smoothing 0.1 (the loss floor is well above zero), Adam 1e-3."""
    s = data.digits_flat(seed)
    return _exp("digits-mlp-label-smoothing", seed, s, lambda: mlp(64, 10, 64),
                nn.CrossEntropyLoss(label_smoothing=0.1), _adam(1e-3), batch_size=64, epochs=20)


@healthy()
def digits_mlp_gelu_onecycle(seed: int = 0) -> Experiment:
    """Digits, a GELU MLP, AdamW at a one-cycle peak of 3e-3, batch 128."""
    s = data.digits_flat(seed)
    return _exp("digits-mlp-gelu-onecycle", seed, s, lambda: mlp(64, 10, 128, act=nn.GELU),
                nn.CrossEntropyLoss(), _adamw(3e-3, 1e-2), batch_size=128, epochs=20,
                options={"schedule": "one-cycle"})


@healthy()
def moons_tanh(seed: int = 0) -> Experiment:
    """Two moons with noise 0.25 (a few percent Bayes error), a tanh MLP, Adam 3e-3."""
    s = data.moons(seed)
    return _exp("moons-tanh", seed, s, lambda: mlp(2, 2, 32, act=nn.Tanh), nn.CrossEntropyLoss(),
                _adam(3e-3), batch_size=32, epochs=20)


@healthy()
def moons_sgd_plain(seed: int = 0) -> Experiment:
    """Two moons, plain SGD 0.1 without momentum, batch 16."""
    s = data.moons(seed)
    return _exp("moons-sgd-plain", seed, s, lambda: mlp(2, 2, 32), nn.CrossEntropyLoss(),
                _sgd(0.1, momentum=0.0), batch_size=16, epochs=20)


@healthy(watch=True)
def hard4_mlp_adam(seed: int = 0) -> Experiment:
    """4 overlapping classes, 4000 samples, 3% flipped labels, a 64-64 MLP, Adam 1e-3."""
    s = data.hard_classes(seed, 4000)
    return _exp("hard4-mlp-adam", seed, s, lambda: mlp(20, 4, 64), nn.CrossEntropyLoss(),
                _adam(1e-3), batch_size=128, epochs=15)


@healthy()
def hard4_grad_clip(seed: int = 0) -> Experiment:
    """Same data, Adam 3e-3 with gradient clipping at norm 1."""
    s = data.hard_classes(seed, 4000)
    return _exp("hard4-grad-clip", seed, s, lambda: mlp(20, 4, 64), nn.CrossEntropyLoss(),
                _adam(3e-3), batch_size=64, epochs=10, options={"grad_clip": 1.0})


@healthy()
def hard10_bn_mlp(seed: int = 0) -> Experiment:
    """10 classes, 8000 samples, a BatchNorm MLP, Adam 1e-3, batch 256."""
    s = data.hard_classes(seed, 8000, classes_=10, informative=12, sep=1.5)
    return _exp("hard10-bn-mlp", seed, s, lambda: mlp(20, 10, 128, bn=True),
                nn.CrossEntropyLoss(), _adam(1e-3), batch_size=256, epochs=15)


@healthy()
def hard_last_batch_of_one(seed: int = 0) -> Experiment:
    """801 training samples at batch 32: every epoch ends with a batch of 1; Adam 1e-3."""
    s = data.hard_classes(seed, 1002, classes_=3)
    return _exp("hard-last-batch-of-one", seed, s, lambda: mlp(20, 3, 64), nn.CrossEntropyLoss(),
                _adam(1e-3), batch_size=32, epochs=15)


@healthy(watch=True, quick=True)
def imbalance_80_20(seed: int = 0) -> Experiment:
    """Look-alike: a converged 80/20 binary classifier with ~3% irreducible error (flipped
    labels), class-weighted cross-entropy, Adam 1e-3."""
    s = data.hard_classes(seed, 3000, d=10, classes_=2, informative=5, sep=2.5, flip=0.03,
                          weights=[0.8, 0.2])
    return _exp("imbalance-80-20", seed, s, lambda: mlp(10, 2, 64),
                nn.CrossEntropyLoss(weight=_class_weights(s["train"][1])), _adam(1e-3),
                batch_size=64, epochs=25)


@healthy()
def imbalance_95_5(seed: int = 0) -> Experiment:
    """A 95/5 binary split, class-weighted cross-entropy, Adam 1e-3, batch 128."""
    s = data.hard_classes(seed, 6000, d=10, classes_=2, informative=5, sep=1.5, flip=0.01,
                          weights=[0.95, 0.05])
    return _exp("imbalance-95-5", seed, s, lambda: mlp(10, 2, 64),
                nn.CrossEntropyLoss(weight=_class_weights(s["train"][1])), _adam(1e-3),
                batch_size=128, epochs=15)


@healthy()
def multilabel_bce(seed: int = 0) -> Experiment:
    """5 labels per sample (multi-label), BCEWithLogitsLoss, Adam 1e-3."""
    s = data.multilabel(seed)
    return _exp("multilabel-bce", seed, s, lambda: mlp(20, 5, 64), nn.BCEWithLogitsLoss(),
                _adam(1e-3), batch_size=64, epochs=15, task="classification")


@healthy()
def large_50k_bs512(seed: int = 0) -> Experiment:
    """50,000 samples (40k to train), 5 overlapping classes, batch 512, Adam 1e-3."""
    s = data.hard_classes(seed, 50_000, d=12, classes_=5, informative=8, sep=1.0)
    return _exp("large-50k-bs512", seed, s, lambda: mlp(12, 5, 64), nn.CrossEntropyLoss(),
                _adam(1e-3), batch_size=512, epochs=4)


# ============================================================================ regression


@healthy(watch=True, quick=True)
def diabetes_mlp(seed: int = 0) -> Experiment:
    """Look-alike: diabetes regression (353 training samples at batch 32: a last batch of 1),
    a 64-64 MLP, Adam 1e-3, standardised targets."""
    s = data.diabetes(seed)
    return _exp("diabetes-mlp", seed, s, lambda: mlp(10, 1, 64), nn.MSELoss(), _adam(1e-3),
                batch_size=32, epochs=30)


@healthy()
def diabetes_sgd_bs8(seed: int = 0) -> Experiment:
    """Diabetes, SGD 3e-3 + momentum 0.9, batch 8 (a last batch of 1), weight decay 1e-4."""
    s = data.diabetes(seed)
    return _exp("diabetes-sgd-bs8", seed, s, lambda: mlp(10, 1, 32), nn.MSELoss(),
                _sgd(3e-3, weight_decay=1e-4), batch_size=8, epochs=20)


@healthy(watch=True)
def friedman_sgd_momentum(seed: int = 0) -> Experiment:
    """Friedman #1 (2000 samples, noise 1), SGD 0.01 + momentum 0.9, batch 32."""
    s = data.friedman(seed, 2000)
    return _exp("friedman-sgd-momentum", seed, s, lambda: mlp(10, 1, 64), nn.MSELoss(),
                _sgd(0.01), batch_size=32, epochs=25)


@healthy()
def friedman_huber_adam(seed: int = 0) -> Experiment:
    """Friedman #1, Huber loss, Adam 1e-3, batch 64."""
    s = data.friedman(seed, 2000)
    return _exp("friedman-huber-adam", seed, s, lambda: mlp(10, 1, 64), nn.HuberLoss(),
                _adam(1e-3), batch_size=64, epochs=25)


@healthy()
def friedman_cosine(seed: int = 0) -> Experiment:
    """Friedman #1, Adam 3e-3 with a cosine decay to 0."""
    s = data.friedman(seed, 2000)
    return _exp("friedman-cosine", seed, s, lambda: mlp(10, 1, 64), nn.MSELoss(), _adam(3e-3),
                batch_size=64, epochs=25, options={"schedule": "cosine"})


@healthy()
def friedman_bn_mlp(seed: int = 0) -> Experiment:
    """Friedman #1, a BatchNorm MLP, Adam 1e-3, batch 64."""
    s = data.friedman(seed, 2000)
    return _exp("friedman-bn-mlp", seed, s, lambda: mlp(10, 1, 64, bn=True), nn.MSELoss(),
                _adam(1e-3), batch_size=64, epochs=20)


@healthy()
def friedman_10k_adamw(seed: int = 0) -> Experiment:
    """Friedman #1 with 10,000 samples, AdamW 1e-3, batch 256, L1 loss."""
    s = data.friedman(seed, 10_000)
    return _exp("friedman-10k-adamw", seed, s, lambda: mlp(10, 1, 128), nn.L1Loss(),
                _adamw(1e-3, 1e-2), batch_size=256, epochs=12)


@healthy()
def friedman_dropout_warmup(seed: int = 0) -> Experiment:
    """Friedman #1, dropout 0.1, Adam 3e-3 with linear warmup."""
    s = data.friedman(seed, 3000)
    return _exp("friedman-dropout-warmup", seed, s, lambda: mlp(10, 1, 128, dropout=0.1),
                nn.MSELoss(), _adam(3e-3), batch_size=64, epochs=15,
                options={"schedule": "warmup"})


# ====================================================================== images (digits)


@healthy(watch=True, quick=True)
def digits_cnn(seed: int = 0) -> Experiment:
    """The demo's setting: a small CNN without batch norm, Adam 1e-3, batch 64."""
    s = data.digits_images(seed)
    return _exp("digits-cnn", seed, s, lambda: SmallCNN(), nn.CrossEntropyLoss(), _adam(1e-3),
                batch_size=64, epochs=12)


@healthy()
def digits_cnn_bn_sgd(seed: int = 0) -> Experiment:
    """CNN with batch norm, SGD 0.05 + momentum 0.9, batch 32."""
    s = data.digits_images(seed)
    return _exp("digits-cnn-bn-sgd", seed, s, lambda: SmallCNN(bn=True), nn.CrossEntropyLoss(),
                _sgd(0.05), batch_size=32, epochs=10)


@healthy()
def digits_cnn_warmup(seed: int = 0) -> Experiment:
    """CNN, Adam 3e-3 with linear warmup over the first 5% of steps."""
    s = data.digits_images(seed)
    return _exp("digits-cnn-warmup", seed, s, lambda: SmallCNN(), nn.CrossEntropyLoss(),
                _adam(3e-3), batch_size=64, epochs=10, options={"schedule": "warmup"})


@healthy()
def digits_cnn_cosine(seed: int = 0) -> Experiment:
    """CNN with batch norm, Adam 2e-3 with cosine decay."""
    s = data.digits_images(seed)
    return _exp("digits-cnn-cosine", seed, s, lambda: SmallCNN(bn=True), nn.CrossEntropyLoss(),
                _adam(2e-3), batch_size=64, epochs=10, options={"schedule": "cosine"})


@healthy()
def digits_cnn_step(seed: int = 0) -> Experiment:
    """CNN, SGD 0.03 + momentum with the step schedule, batch 64."""
    s = data.digits_images(seed)
    return _exp("digits-cnn-step", seed, s, lambda: SmallCNN(), nn.CrossEntropyLoss(),
                _sgd(0.03), batch_size=64, epochs=12, options={"schedule": "step"})


@healthy()
def digits_cnn_onecycle(seed: int = 0) -> Experiment:
    """CNN with batch norm, SGD at a one-cycle peak of 0.1 + momentum, batch 128."""
    s = data.digits_images(seed)
    return _exp("digits-cnn-onecycle", seed, s, lambda: SmallCNN(bn=True),
                nn.CrossEntropyLoss(), _sgd(0.1), batch_size=128, epochs=12,
                options={"schedule": "one-cycle"})


@healthy()
def digits_cnn_dropout_wd(seed: int = 0) -> Experiment:
    """CNN with dropout 0.3 before the head, AdamW 1e-3 with weight decay 5e-2."""
    s = data.digits_images(seed)
    return _exp("digits-cnn-dropout-wd", seed, s, lambda: SmallCNN(dropout=0.3),
                nn.CrossEntropyLoss(), _adamw(1e-3, 5e-2), batch_size=64, epochs=12)


@healthy()
def digits_cnn_bs256(seed: int = 0) -> Experiment:
    """CNN, Adam 3e-3, batch 256 (6 steps per epoch)."""
    s = data.digits_images(seed)
    return _exp("digits-cnn-bs256", seed, s, lambda: SmallCNN(), nn.CrossEntropyLoss(),
                _adam(3e-3), batch_size=256, epochs=20)


@healthy(quick=True)
def digits_rescnn(seed: int = 0) -> Experiment:
    """A residual CNN (three BatchNorm residual blocks, global pooling), Adam 1e-3."""
    s = data.digits_images(seed)
    return _exp("digits-rescnn", seed, s, lambda: ResCNN(), nn.CrossEntropyLoss(), _adam(1e-3),
                batch_size=64, epochs=8)


# ============================================================================ sequences


@healthy(quick=True)
def tokens_lstm(seed: int = 0) -> Experiment:
    """Token sequences (length 20): which of three tokens is most frequent, 5% flipped labels;
    an embedding + LSTM, Adam 3e-3, batch 64."""
    s = data.tokens_majority(seed)
    return _exp("tokens-lstm", seed, s, lambda: RNNClassifier(3, vocab=12, cell="lstm"),
                nn.CrossEntropyLoss(), _adam(3e-3), batch_size=64, epochs=15)


@healthy(watch=True)
def tokens_gru(seed: int = 0) -> Experiment:
    """The same counting task with a GRU, Adam 3e-3, gradient clipping at 1."""
    s = data.tokens_majority(seed)
    return _exp("tokens-gru", seed, s, lambda: RNNClassifier(3, vocab=12, cell="gru"),
                nn.CrossEntropyLoss(), _adam(3e-3), batch_size=64, epochs=15,
                options={"grad_clip": 1.0})


@healthy()
def waves_lstm(seed: int = 0) -> Experiment:
    """Continuous noisy sine waves (N, 30, 2), three frequency bands, an LSTM, Adam 3e-3."""
    s = data.noisy_waves(seed)
    return _exp("waves-lstm", seed, s, lambda: RNNClassifier(3, d_in=2, cell="lstm"),
                nn.CrossEntropyLoss(), _adam(3e-3), batch_size=32, epochs=12)


@healthy()
def waves_gru_rmsprop(seed: int = 0) -> Experiment:
    """The waves with a 2-layer GRU, RMSprop 1e-3, clipping at 1, batch 32."""
    s = data.noisy_waves(seed)
    return _exp("waves-gru-rmsprop", seed, s,
                lambda: RNNClassifier(3, d_in=2, cell="gru", layers=2), nn.CrossEntropyLoss(),
                lambda p: torch.optim.RMSprop(p, lr=1e-3), batch_size=32, epochs=12,
                options={"grad_clip": 1.0})


@healthy(quick=True)
def tokens_transformer(seed: int = 0) -> Experiment:
    """A non-causal 2-block transformer classifier on the counting task, AdamW 1e-3 with
    warmup."""
    s = data.tokens_majority(seed)
    return _exp("tokens-transformer", seed, s,
                lambda: TinyTransformer(12, 3, length=20), nn.CrossEntropyLoss(),
                _adamw(1e-3, 1e-2), batch_size=64, epochs=15, options={"schedule": "warmup"})


@healthy(quick=True)
def markov_causal_lm(seed: int = 0) -> Experiment:
    """A causal 2-block transformer language model (next token of a noisy second-order Markov
    chain), flattened cross-entropy, AdamW 3e-3 with warmup, batch 32."""
    s = data.tokens_next(seed)
    return _exp("markov-causal-lm", seed, s,
                lambda: TinyTransformer(10, 10, length=24, causal=True), FlattenCE(),
                _adamw(3e-3, 1e-2), batch_size=32, epochs=12, causal=True,
                options={"schedule": "warmup"})


@healthy()
def markov_causal_lm_cosine(seed: int = 0) -> Experiment:
    """A wider causal language model (d=48), AdamW 3e-3 with warmup + cosine decay."""
    s = data.tokens_next(seed)
    return _exp("markov-causal-lm-cosine", seed, s,
                lambda: TinyTransformer(10, 10, length=24, causal=True, d=48),
                FlattenCE(), _adamw(3e-3, 1e-2), batch_size=32, epochs=15, causal=True,
                options={"schedule": {"name": "cosine", "warmup_fraction": 0.05}})
