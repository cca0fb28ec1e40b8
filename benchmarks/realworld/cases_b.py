"""Real bugs, part B: data, model and pipeline (issue 13).

Each case ports one reported bug to offline data (scikit-learn's bundled digits or seeded
synthetic data shaped like the original), small enough to run in a few seconds. The source
is the report (GitHub issue or Q&A thread); the symptom is what its author saw. ``cause``
was decided from the bug, before nnrecipe was run on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import nnrecipe
from nnrecipe import Experiment

from .registry import bug

# ---------------------------------------------------------------------------- shared data


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits: pixels 0-16, 10 classes, 1797 samples."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


def _split(n: int, rng: np.random.Generator, val: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    idx = rng.permutation(n)
    k = int(round(n * (1 - val)))
    return idx[:k], idx[k:]


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(0, keepdims=True), train.std(0, keepdims=True)
    std = np.where(std > 0, std, 1.0)
    return [((a - mean) / std).astype(np.float32) for a in (train, *others)]


def _blobs(n: int, d: int, classes: int, rng: np.random.Generator, sep: float = 2.0
           ) -> tuple[np.ndarray, np.ndarray]:
    centers = rng.normal(0, sep, size=(classes, d))
    y = rng.integers(0, classes, size=n)
    X = centers[y] + rng.normal(0, 1, size=(n, d))
    return X.astype(np.float32), y.astype(np.int64)


def _adam(lr: float = 1e-3) -> Any:
    return lambda params: torch.optim.Adam(params, lr=lr)


# ------------------------------------------------------- parameters the optimizer never sees


class _ListMLP(nn.Module):
    """The reporter's SNLI classifier: hidden blocks appended to a plain Python list."""

    def __init__(self, d_in: int, n_hid: int, n_layers: int, n_classes: int) -> None:
        super().__init__()
        self.hids = []  # the bug: a list, not nn.ModuleList
        indim = d_in
        for _ in range(n_layers):
            self.hids.append([nn.Linear(indim, n_hid), nn.ReLU()])
            indim = n_hid
        self.classifier = nn.Linear(n_hid, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, act in self.hids:
            x = act(linear(x))
        return self.classifier(x)


@bug(source="pytorch/pytorch#715",
     symptom="an SNLI classifier built its hidden layers in a Python list inside __init__; "
             "printing the model showed only the classifier and parameters() missed the "
             "hidden layers, so they were never trained",
     cause=("unregistered-parameters",))
def python_list_layers(seed: int) -> Experiment:
    """An MLP whose hidden Linear+ReLU blocks live in a Python list (three-way sentence-pair
    classification ported to 3-class synthetic features): only the classifier is
    registered."""
    rng = np.random.default_rng(seed)
    X, y = _blobs(600, 40, 3, rng, sep=0.6)
    tr, va = _split(len(y), rng)
    Xtr, Xva = _standardise(X[tr], X[va])
    return Experiment(model=lambda: _ListMLP(40, 64, 2, 3), train=(Xtr, y[tr]),
                      val=(Xva, y[va]), loss=nn.CrossEntropyLoss(), optimizer=_adam(),
                      batch_size=32, epochs=8, seed=seed, name="python-list-layers")


class _ForwardBuiltNet(nn.Module):
    """The forum's Code_1: the second conv layer is instantiated inside ``forward``."""

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Conv2d(1, 16, 3, padding=1)
        self.head = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.layer1(x))
        self.layer2 = nn.Conv2d(16, 32, 3, padding=1)  # the bug: new weights every call
        out = torch.relu(self.layer2(out))
        out = nn.functional.max_pool2d(out, 2)
        return self.head(out.flatten(1))


@bug(source="https://discuss.pytorch.org/t/can-i-instantiate-layers-in-forward-function/105054",
     symptom="a CNN that instantiates conv layers inside forward runs without error; the "
             "answer explains each pass builds new layers, so their parameters are lost to "
             "the optimizer and never learn",
     cause=("unregistered-parameters", "params-not-in-optimizer"))
def layers_created_in_forward(seed: int) -> Experiment:
    """A small CNN on the 8x8 digits whose second convolution is created inside forward
    (fresh random weights on every call)."""
    rng = np.random.default_rng(seed)
    X, y = _digits()
    tr, va = _split(len(y), rng)
    X = (X / 16.0 - 0.5)[:, None] / 0.5
    return Experiment(model=_ForwardBuiltNet, train=(X[tr], y[tr]), val=(X[va], y[va]),
                      loss=nn.CrossEntropyLoss(), optimizer=_adam(), batch_size=64,
                      epochs=6, seed=seed, name="layers-created-in-forward")


# ------------------------------------------------------------- axes mixed up (view vs permute)


class _CRNNHead(nn.Module):
    """CRNN's recurrent head: features arrive batch-first, are permuted to (T, B, C) as the
    original code does, but the LSTM was switched to ``batch_first=True``."""

    def __init__(self, n_in: int, hidden: int, n_classes: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(n_in, hidden, batch_first=True)  # the bug: input is (T, B, C)
        self.fc = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(1, 0, 2)  # (B, T, C) -> (T, B, C), as CRNN feeds its LSTM
        out, _ = self.rnn(x)  # read as batch=T, time=B: the recurrence runs over samples
        return self.fc(out[-1])  # "last time step" in the (T, B, H) layout


@bug(source="https://discuss.pytorch.org/t/lstm-change-batch-first-true-loss-does-not-decrease/62364",
     symptom="CRNN trains normally; after switching its LSTM to batch_first=True for a "
             "TensorRT export (inputs still time-first) the loss no longer decreases",
     cause=("batch-dependency",))
def lstm_batch_first_mismatch(seed: int) -> Experiment:
    """Sequence classification (12 steps of 4 features, the class set by the sequence's
    cumulative drift) through an LSTM declared batch_first=True but fed (T, B, C): it
    recurs across the samples of the batch."""
    rng = np.random.default_rng(seed)
    n, T, F = 600, 12, 4
    y = rng.integers(0, 3, size=n)
    drift = (y - 1)[:, None, None] * 0.5
    X = (rng.normal(0, 1, size=(n, T, F)) + drift).astype(np.float32)
    tr, va = _split(n, rng)
    return Experiment(model=lambda: _CRNNHead(F, 32, 3), train=(X[tr], y[tr]),
                      val=(X[va], y[va]), loss=nn.CrossEntropyLoss(), optimizer=_adam(),
                      batch_size=32, epochs=8, seed=seed, name="lstm-batch-first-mismatch")


def _colour_images(n: int, rng: np.random.Generator, side: int = 16
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Channels-last (N, H, W, 3) images of 4 classes: a bar whose colour and orientation
    set the class, on a noisy background (CIFAR-shaped, smaller)."""
    y = rng.integers(0, 4, size=n)
    X = rng.normal(0.0, 0.3, size=(n, side, side, 3))
    for i, c in enumerate(y):
        pos = rng.integers(3, side - 3)
        channel = c % 2 * 2  # red or blue
        if c < 2:
            X[i, pos - 1:pos + 2, 2:side - 2, channel] += 1.5  # horizontal bar
        else:
            X[i, 2:side - 2, pos - 1:pos + 2, channel] += 1.5  # vertical bar
    return X.astype(np.float32), y.astype(np.int64)


class _ReshapeCNN(nn.Module):
    """The tutorial's CNN: channels-last images reshaped (not transposed) to (-1, 3, H, W)."""

    def __init__(self, side: int = 16) -> None:
        super().__init__()
        self.side = side
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * (side // 4) ** 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 3, self.side, self.side)  # the bug: HWC memory read as CHW
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


@bug(source="PaddlePaddle/Paddle#29716",
     symptom="the official CIFAR-10 CNN tutorial reshapes HWC images to (-1, 3, 32, 32); it "
             "trains but reaches only ~40% accuracy, ~70% once the images are transposed "
             "to CHW",
     cause=("channel-order",))
def reshape_hwc_to_chw(seed: int) -> Experiment:
    """Channels-last colour images reshaped inside forward to (N, 3, H, W) instead of
    permuted: each "channel" plane interleaves the colours of neighbouring pixels."""
    rng = np.random.default_rng(seed)
    X, y = _colour_images(480, rng)
    tr, va = _split(len(y), rng)
    return Experiment(model=_ReshapeCNN, train=(X[tr], y[tr]), val=(X[va], y[va]),
                      loss=nn.CrossEntropyLoss(), optimizer=_adam(), batch_size=32,
                      epochs=5, seed=seed, name="reshape-hwc-to-chw")


# ------------------------------------------------------------------- scale of inputs/targets


@bug(source="https://datascience.stackexchange.com/questions/39929",
     symptom="the Keras Fashion-MNIST tutorial without the division by 255: accuracy falls "
             "from over 85% to 10%",
     cause=("inputs-not-normalized", "unscaled-features"))
def raw_pixels_0_255(seed: int) -> Experiment:
    """The tutorial's Flatten-Dense(128)-Dense(10) classifier on raw 0-255 pixels (the
    digits rescaled to 0-255, as uint8 images load)."""
    rng = np.random.default_rng(seed)
    X, y = _digits()
    X = np.round(X * 255.0 / 16.0).reshape(len(y), -1).astype(np.float32)
    tr, va = _split(len(y), rng)
    model = lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))  # noqa: E731
    return Experiment(model=model, train=(X[tr], y[tr]), val=(X[va], y[va]),
                      loss=nn.CrossEntropyLoss(), optimizer=_adam(), batch_size=32,
                      epochs=5, seed=seed, name="raw-pixels-0-255")


@bug(source="https://stats.stackexchange.com/questions/409000",
     symptom="house prices (mean ~$250,000) as the raw MSE target: after 2,000 epochs Adam "
             "was still slowly moving the outputs up from zero and the errors stayed huge",
     cause=("unscaled-targets",))
def house_prices_raw_target(seed: int) -> Experiment:
    """Standardised housing-like features, the price in dollars as the MSE target."""
    rng = np.random.default_rng(seed)
    n, d = 800, 8
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    price = 250_000 + 90_000 * np.tanh(X @ w / np.sqrt(d)) + 15_000 * rng.normal(size=n)
    y = price.astype(np.float32).reshape(-1, 1)
    tr, va = _split(n, rng)
    model = lambda: nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, 32),  # noqa: E731
                                  nn.ReLU(), nn.Linear(32, 1))
    return Experiment(model=model, train=(X[tr], y[tr]), val=(X[va], y[va]),
                      loss=nn.MSELoss(), optimizer=_adam(), batch_size=32, epochs=8,
                      seed=seed, name="house-prices-raw-target")


class _SqueezedHead(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)  # the bug: (N,) against targets of shape (N, 1)


@bug(source="deepset-ai/FARM#229",
     symptom="a document-regression head (labels 0-16) trains with a high loss and PyTorch "
             "warns 'Using a target size (torch.Size([32, 1])) that is different to the "
             "input size (torch.Size([32]))'; the logits had been squeezed",
     cause=("target-shape-mismatch",))
def regression_target_broadcast(seed: int) -> Experiment:
    """A regression head whose output is squeezed to (N,) while the labels are (N, 1): MSE
    broadcasts to (N, N) and every prediction is pulled to the batch mean."""
    rng = np.random.default_rng(seed)
    n, d = 800, 32
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    score = X @ w / np.sqrt(d)
    y = np.clip(np.round(8 + 3 * score), 0, 16).astype(np.float32).reshape(-1, 1)
    tr, va = _split(n, rng)
    return Experiment(model=lambda: _SqueezedHead(d), train=(X[tr], y[tr]),
                      val=(X[va], y[va]), loss=nn.MSELoss(), optimizer=_adam(),
                      batch_size=32, epochs=8, seed=seed, task="regression",
                      name="regression-target-broadcast")


# ------------------------------------------------------------------------- sequence models


class _CaptionDecoder(nn.Module):
    def __init__(self, vocab: int, dim: int = 32) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.rnn = nn.GRU(dim, dim, batch_first=True)
        self.out = nn.Linear(dim, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.emb(x))
        return self.out(h).transpose(1, 2)  # (N, V, T) for CrossEntropyLoss


def _padded_sequences(n: int, T: int, vocab: int, rng: np.random.Generator, pad: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Token sequences of random length (3..T/2) padded at the end with ``pad``; the target
    is the next token (each token is the sum of the three before it, mod the vocabulary, so
    it is learnable, and three random start tokens make nearly every sequence unique)."""
    X = np.full((n, T), pad, dtype=np.int64)
    Y = np.full((n, T), pad, dtype=np.int64)
    for i in range(n):
        length = int(rng.integers(3, T // 2 + 1))
        seq = [int(v) for v in rng.integers(0, vocab - 1, size=3)]
        while len(seq) < length + 1:
            seq.append((seq[-1] + seq[-2] + seq[-3]) % (vocab - 1))
        ids = 1 + np.asarray(seq)  # 0 is the pad id
        X[i, :length] = ids[:-1]
        Y[i, :length] = ids[1:]
    return X, Y


@bug(source="saahiluppal/catr#12",
     symptom="the captioning transformer's CrossEntropyLoss has no ignore_index, so [PAD] "
             "targets count in the loss and the model is trained to predict padding",
     cause=("padding-in-loss",))
def padding_counted_in_loss(seed: int) -> Experiment:
    """A next-token decoder on captions padded to a common length with id 0, trained with a
    CrossEntropyLoss that does not ignore the pad id (more than half the targets are pad)."""
    rng = np.random.default_rng(seed)
    vocab, T = 50, 16
    X, Y = _padded_sequences(800, T, vocab, rng)
    tr, va = _split(len(X), rng)
    return Experiment(model=lambda: _CaptionDecoder(vocab), train=(X[tr], Y[tr]),
                      val=(X[va], Y[va]), loss=nn.CrossEntropyLoss(), optimizer=_adam(3e-3),
                      batch_size=32, epochs=6, seed=seed, task="classification",
                      name="padding-counted-in-loss")


class _TinyLM(nn.Module):
    """A one-layer transformer language model trained without its causal mask."""

    def __init__(self, vocab: int, T: int, dim: int = 32) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(1, T, dim))
        layer = nn.TransformerEncoderLayer(dim, 2, 64, dropout=0.0, batch_first=True)
        self.body = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.out = nn.Linear(dim, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x) + self.pos[:, :x.shape[1]]
        h = self.body(h)  # the bug: no mask=generate_square_subsequent_mask(T)
        return self.out(h).transpose(1, 2)


@bug(source="alex-matton/causal-transformer-decoder#1",
     symptom="trained without a causal target mask, the decoder simply copies the future "
             "tokens: training looks fine, generation token by token is terrible",
     cause=("causal-leak",))
def causal_mask_missing(seed: int) -> Experiment:
    """A next-token transformer on random token sequences (targets = inputs shifted by one)
    without the causal mask: position t attends to t+1, which is its own target."""
    rng = np.random.default_rng(seed)
    vocab, T, n = 20, 12, 800
    seq = rng.integers(0, vocab, size=(n, T + 1))
    X, Y = seq[:, :-1].astype(np.int64), seq[:, 1:].astype(np.int64)
    tr, va = _split(n, rng)
    return Experiment(model=lambda: _TinyLM(vocab, T), train=(X[tr], Y[tr]),
                      val=(X[va], Y[va]), loss=nn.CrossEntropyLoss(), optimizer=_adam(),
                      batch_size=32, epochs=4, seed=seed, causal=True,
                      task="classification", name="causal-mask-missing")


# -------------------------------------------------------------------- dropout / batch norm


class _I3DHead(nn.Module):
    """I3D's classification head as ported: ``nn.Dropout(dropout_keep_prob)`` with
    ``dropout_keep_prob=1``."""

    def __init__(self, dropout_keep_prob: float = 1.0) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.dropout = nn.Dropout(dropout_keep_prob)  # the bug: a keep probability as p
        self.logits = nn.Conv2d(32, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.logits(self.dropout(h)).flatten(1)


@bug(source="hassony2/kinetics_i3d_pytorch#6",
     symptom="the I3D port sets dropout_keep_prob=1 and passes it to nn.Dropout, whose p is "
             "the probability of zeroing: in training every unit of the head is dropped",
     cause=("dropout-rate-high",))
def dropout_keep_prob_as_p(seed: int) -> Experiment:
    """A small conv net with I3D's head on the digits: global pool, Dropout(p=1.0) (a keep
    probability passed as p), 1x1 conv logits."""
    rng = np.random.default_rng(seed)
    X, y = _digits()
    X = ((X / 16.0 - 0.5) / 0.5)[:, None]
    tr, va = _split(len(y), rng)
    return Experiment(model=_I3DHead, train=(X[tr], y[tr]), val=(X[va], y[va]),
                      loss=nn.CrossEntropyLoss(), optimizer=_adam(), batch_size=64,
                      epochs=5, seed=seed, name="dropout-keep-prob-as-p")


@bug(source="pytorch/pytorch#7716",
     symptom="training with BatchNorm1d fails in the last batch of an epoch when "
             "len(dataset) % batch_size == 1 ('Expected more than 1 value per channel when "
             "training')",
     cause=("singleton-last-batch",))
def batchnorm_singleton_last_batch(seed: int) -> Experiment:
    """An MLP with BatchNorm1d on 257 training samples in batches of 64: the last batch
    holds one sample."""
    rng = np.random.default_rng(seed)
    X, y = _blobs(400, 10, 3, rng)
    idx = rng.permutation(len(y))
    tr, va = idx[:257], idx[257:]
    Xtr, Xva = _standardise(X[tr], X[va])
    model = lambda: nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(),  # noqa: E731
                                  nn.Linear(32, 3))
    return Experiment(model=model, train=(Xtr, y[tr]), val=(Xva, y[va]),
                      loss=nn.CrossEntropyLoss(), optimizer=_adam(), batch_size=64,
                      epochs=5, seed=seed, name="batchnorm-singleton-last-batch")


# --------------------------------------------------------------- splits, leakage, labels


def _patients(n_patients: int, per_patient: tuple[int, int], d: int, rng: np.random.Generator,
              identity: float = 2.0, signal: float = 0.5
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples grouped by patient: each patient has a strong personal signature (scanner,
    anatomy) and one diagnosis; the diagnosis itself moves the features only a little."""
    X, y, g = [], [], []
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    for p in range(n_patients):
        label = int(rng.integers(0, 2))
        centre = rng.normal(0, identity, size=d) + signal * (2 * label - 1) * direction * 3
        k = int(rng.integers(per_patient[0], per_patient[1] + 1))
        X.append(centre + rng.normal(0, 0.5, size=(k, d)))
        y += [label] * k
        g += [p] * k
    return (np.concatenate(X).astype(np.float32), np.asarray(y, dtype=np.int64),
            np.asarray(g, dtype=np.int64))


@bug(source="Lightning-Universe/lightning-Covid19#11",
     symptom="the COVID chest X-ray set has several images per patient and was split by "
             "image, so the same patient lands in train, validation and test",
     cause=("group-leakage",))
def patient_leakage_with_ids(seed: int) -> Experiment:
    """Several images per patient (as feature vectors), a random image-level split; the
    patient ids are known and passed as ``groups=``."""
    rng = np.random.default_rng(seed)
    X, y, g = _patients(90, (3, 7), 32, rng)
    tr, va = _split(len(y), rng)
    Xtr, Xva = _standardise(X[tr], X[va])
    model = lambda: nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 2))  # noqa: E731
    return Experiment(model=model, train=(Xtr, y[tr]), val=(Xva, y[va]),
                      loss=nn.CrossEntropyLoss(), optimizer=_adam(), batch_size=32,
                      epochs=8, seed=seed, groups={"train": g[tr], "val": g[va]},
                      name="patient-leakage-with-ids")


@bug(source="theislab/multimil#75",
     symptom="the train/validation split put cells of the same sample (patient) on both "
             "sides; on a regression task the validation error stayed consistently below "
             "the training error",
     cause=("group-leakage",))
def sample_leakage_without_ids(seed: int) -> Experiment:
    """Regression on cells grouped by donor sample, split cell by cell; nnrecipe is not told
    the sample ids (the split helper that leaked them hid them too)."""
    rng = np.random.default_rng(seed)
    n_samples, d = 60, 24
    X, Yc, G = [], [], []
    w = rng.normal(size=d) / np.sqrt(d)
    for s in range(n_samples):
        centre = rng.normal(0, 2.0, size=d)
        target = float(np.tanh(centre @ w)) + 0.3 * rng.normal()  # a donor-level phenotype
        k = int(rng.integers(8, 14))
        X.append(centre + rng.normal(0, 0.4, size=(k, d)))
        Yc += [target] * k
        G += [s] * k
    Xa = np.concatenate(X).astype(np.float32)
    Ya = np.asarray(Yc, dtype=np.float32)
    Ya = ((Ya - Ya.mean()) / Ya.std()).reshape(-1, 1)
    tr, va = _split(len(Ya), rng, val=0.2)
    Xtr, Xva = _standardise(Xa[tr], Xa[va])
    model = lambda: nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Dropout(0.2),  # noqa: E731
                                  nn.Linear(64, 1))
    return Experiment(model=model, train=(Xtr, Ya[tr]), val=(Xva, Ya[va]), loss=nn.MSELoss(),
                      optimizer=_adam(), batch_size=32, epochs=10, seed=seed,
                      name="sample-leakage-without-ids")


@bug(source="stefyste/RIAWELC#2",
     symptom="weld radiographs cut into overlapping sliding-window patches, patches split "
             "at random: every test image is a byte-identical copy of a training image and "
             "the published 93% accuracy falls to ~82% on a clean split",
     cause=("split-leakage",))
def sliding_window_duplicates(seed: int) -> Experiment:
    """Patches (8x8) cut with overlap from a few source "radiographs" of 4 defect types and
    saved more than once, then split at random: copies of training patches in validation."""
    rng = np.random.default_rng(seed)
    patches, labels = [], []
    for _ in range(29):
        label = int(rng.integers(0, 4))
        img = rng.normal(0, 1, size=(24, 24))
        img += np.sin(np.arange(24) * (label + 1) * 0.6)[None, :] * 1.5
        for r in range(0, 17, 4):
            for c in range(0, 17, 4):
                p = img[r:r + 8, c:c + 8]
                copies = 2 if rng.random() < 0.5 else 1  # the same window saved twice
                patches += [p] * copies
                labels += [label] * copies
    X = np.asarray(patches, dtype=np.float32)[:, None]
    y = np.asarray(labels, dtype=np.int64)
    tr, va = _split(len(y), rng)
    model = lambda: nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),  # noqa: E731
                                  nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 16, 4))
    return Experiment(model=model, train=(X[tr], y[tr]), val=(X[va], y[va]),
                      loss=nn.CrossEntropyLoss(), optimizer=_adam(), batch_size=32,
                      epochs=6, seed=seed, name="sliding-window-duplicates")


def _bag_of_words(n: int, vocab: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Binary sentiment as word counts: each class favours its own half of the vocabulary."""
    y = rng.integers(0, 2, size=n)
    rates = np.full((n, vocab), 0.3)
    half = vocab // 2
    rates[y == 0, :half] += 0.5
    rates[y == 1, half:] += 0.5
    X = rng.poisson(rates).astype(np.float32)
    return X, y.astype(np.int64)


@bug(source="dennybritz/cnn-text-classification-tf#136",
     symptom="the evaluation shuffles the test sentences with a permutation but compares the "
             "predictions with the unshuffled labels, so the reported accuracy is wrong",
     cause=("label-errors",))
def eval_inputs_shuffled_labels_not(seed: int) -> Experiment:
    """Text classification (bag of words): the validation inputs were shuffled, their labels
    were not."""
    rng = np.random.default_rng(seed)
    X, y = _bag_of_words(900, 50, rng)
    tr, va = _split(len(y), rng)
    Xtr, Xva = _standardise(X[tr], X[va])
    Xva = Xva[rng.permutation(len(Xva))]  # the bug: labels y[va] keep their order
    model = lambda: nn.Sequential(nn.Linear(50, 32), nn.ReLU(), nn.Linear(32, 2))  # noqa: E731
    return Experiment(model=model, train=(Xtr, y[tr]), val=(Xva, y[va]),
                      loss=nn.CrossEntropyLoss(), optimizer=_adam(), batch_size=32,
                      epochs=6, seed=seed, name="eval-inputs-shuffled-labels-not")


@bug(source="udacity/sdc-issue-reports#1326",
     symptom="a batching quiz accepts features and labels shuffled with different orders: "
             "the rows no longer match their labels and nothing complains",
     cause=("label-errors", "input-independent"))
def features_labels_shuffled_separately(seed: int) -> Experiment:
    """The digits with training features and labels shuffled by two different permutations
    (the validation split is intact)."""
    rng = np.random.default_rng(seed)
    X, y = _digits()
    X = ((X / 16.0 - 0.5) / 0.5).reshape(len(y), -1)
    tr, va = _split(len(y), rng)
    Xtr, ytr = X[tr][rng.permutation(len(tr))], y[tr][rng.permutation(len(tr))]  # the bug
    model = lambda: nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))  # noqa: E731
    return Experiment(model=model, train=(Xtr, ytr), val=(X[va], y[va]),
                      loss=nn.CrossEntropyLoss(), optimizer=_adam(), batch_size=32,
                      epochs=6, seed=seed, name="features-labels-shuffled-separately")


@bug(source="abhuse/polyloss-pytorch#5",
     symptom="binary classification with 86.2% / 13.8% classes (462 samples) and an "
             "unweighted loss: every validation prediction is the majority class",
     cause=("class-imbalance",))
def class_imbalance_unweighted(seed: int) -> Experiment:
    """462 samples, 13.8% positives, weakly separable features, plain CrossEntropyLoss."""
    rng = np.random.default_rng(seed)
    n = 462
    y = (rng.random(n) < 0.138).astype(np.int64)
    X = rng.normal(size=(n, 20)) + 0.4 * y[:, None] * rng.normal(size=(1, 20))
    tr, va = _split(n, rng)
    Xtr, Xva = _standardise(X[tr].astype(np.float32), X[va].astype(np.float32))
    model = lambda: nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 2))  # noqa: E731
    return Experiment(model=model, train=(Xtr, y[tr]), val=(Xva, y[va]),
                      loss=nn.CrossEntropyLoss(), optimizer=_adam(), batch_size=32,
                      epochs=8, seed=seed, name="class-imbalance-unweighted")


class _AugmentedDigits(Dataset):  # type: ignore[type-arg]
    """The digits with the training transform (a random shift by up to a pixel and a little
    Gaussian noise) applied to every sample it serves."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = torch.as_tensor(X), torch.as_tensor(y)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.X[i]
        dy, dx = (int(v) for v in torch.randint(-1, 2, (2,)))
        x = torch.roll(x, shifts=(dy, dx), dims=(1, 2))
        x = x + 0.1 * torch.randn_like(x)
        return x, self.y[i]


@bug(source="gpleiss/efficient_densenet_pytorch#51",
     symptom="the random training transform was attached before the train/validation split, "
             "so the validation images are augmented too",
     cause=("augmentation-active",))
def augmented_validation(seed: int) -> Experiment:
    """A small CNN on the digits; the training augmentation (random shifts, noise) also
    applies to the validation split carved from the same augmented dataset."""
    rng = np.random.default_rng(seed)
    X, y = _digits()
    X = ((X / 16.0 - 0.5) / 0.5)[:, None].astype(np.float32)
    tr, va = _split(len(y), rng)
    model = lambda: nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),  # noqa: E731
                                  nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 10))
    return Experiment(model=model, train=_AugmentedDigits(X[tr], y[tr]),
                      val=_AugmentedDigits(X[va], y[va]), loss=nn.CrossEntropyLoss(),
                      optimizer=_adam(), batch_size=64, epochs=5, seed=seed,
                      name="augmented-validation")


@bug(source="JeasunLok/ResNet-pytorch#1",
     symptom="training accuracy is fine but testing accuracy is very low: the Normalize "
             "transform was applied to the training set and not to the test set",
     cause=("distribution-shift",))
def val_not_normalized(seed: int) -> Experiment:
    """A CNN on the digits: training images go through ToTensor (0-1) and Normalize with the
    training mean/std, the validation images through ToTensor only."""
    rng = np.random.default_rng(seed)
    X, y = _digits()
    X = (X / 16.0)[:, None].astype(np.float32)  # ToTensor: pixels in [0, 1]
    tr, va = _split(len(y), rng)
    mean, std = float(X[tr].mean()), float(X[tr].std())
    Xtr = ((X[tr] - mean) / std).astype(np.float32)  # Normalize: train only (the bug)
    model = lambda: nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),  # noqa: E731
                                  nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 10))
    return Experiment(model=model, train=(Xtr, y[tr]), val=(X[va], y[va]),
                      loss=nn.CrossEntropyLoss(), optimizer=_adam(), batch_size=64,
                      epochs=5, seed=seed, name="val-not-normalized")


@bug(source="keras-team/keras#126",
     symptom="the README's MLP on a toy binary problem ends in Dense(1, activation="
             "'softmax'): loss and validation loss do not improve and predict_proba gives "
             "all ones",
     cause=("output-activation",))
def softmax_single_unit(seed: int) -> Experiment:
    """The README MLP (tanh, dropout 0.5, SGD 0.1 Nesterov, MSE) ending in a softmax over
    one unit, on the issue's toy rule (x0 + x1 > 0.5) sampled 500 times."""
    rng = np.random.default_rng(seed)
    X = rng.random((500, 2)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0.5).astype(np.float32).reshape(-1, 1)
    tr, va = _split(len(y), rng)
    model = lambda: nn.Sequential(  # noqa: E731
        nn.Linear(2, 64), nn.Tanh(), nn.Dropout(0.5), nn.Linear(64, 64), nn.Tanh(),
        nn.Dropout(0.5), nn.Linear(64, 1), nn.Softmax(dim=1))  # the bug: softmax of 1 unit
    opt = lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)  # noqa: E731
    return Experiment(model=model, train=(X[tr], y[tr]), val=(X[va], y[va]), loss=nn.MSELoss(),
                      optimizer=opt, batch_size=16, epochs=5, seed=seed,
                      task="classification", name="softmax-single-unit")


# ------------------------------------------------------- parameters the optimizer does not hold


class _Tagger(nn.Module):
    """HVPNeT's NER tagger, reduced: an encoder, then the fc emission layer (registered last)."""

    def __init__(self, vocab: int, tags: int, dim: int = 32) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.encoder = nn.GRU(dim, dim, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * dim, tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.encoder(self.emb(x))
        return self.fc(h).transpose(1, 2)  # (N, tags, T)


@bug(source="zjunlp/HVPNeT#5",
     symptom="the training script builds optimizer parameter groups by hand and never appends "
             "the group holding the crf and fc parameters, so those layers are not trained "
             "(the maintainers confirmed and had fixed it locally)",
     cause=("params-not-in-optimizer",))
def head_left_out_of_optimizer(seed: int) -> Experiment:
    """Token tagging (the tag of a token depends on it and its left neighbour): the optimizer
    receives every parameter group except the emission layer's (fc), which keeps its random
    initialisation."""
    rng = np.random.default_rng(seed)
    vocab, tags, n, T = 40, 5, 700, 12
    X = rng.integers(0, vocab, size=(n, T))
    prev = np.concatenate([np.zeros((n, 1), dtype=X.dtype), X[:, :-1]], axis=1)
    Y = ((X + prev) % tags).astype(np.int64)
    tr, va = _split(n, rng)

    def optimizer(params: Any) -> torch.optim.Optimizer:
        groups = list(params)
        # the bug: the last group (fc weight and bias) is built but never appended
        return torch.optim.AdamW(groups[:-2], lr=3e-3)

    return Experiment(model=lambda: _Tagger(vocab, tags), train=(X[tr], Y[tr]),
                      val=(X[va], Y[va]), loss=nn.CrossEntropyLoss(), optimizer=optimizer,
                      batch_size=32, epochs=5, seed=seed, task="classification",
                      name="head-left-out-of-optimizer")


@bug(source="microsoft/nni#4521",
     symptom="after pruning and ModelSpeedup replaced the layers with smaller ones, "
             "fine-tuning did not update the parameters: the optimizer still held the "
             "replaced layers' tensors (fixed by building a new optimizer)",
     cause=("params-not-in-optimizer",), mode="watch")
def optimizer_kept_after_layers_replaced(seed: int, watch_kwargs: dict[str, Any]) -> Any:
    """A digits MLP pruned after its optimizer was built: the hidden layer is replaced by a
    smaller copy of its kept units (and the next layer by the matching slice), then fine-tuned
    with the old optimizer under ``nnrecipe.watch``."""
    rng = np.random.default_rng(seed)
    X, y = _digits()
    X = ((X / 16.0 - 0.5) / 0.5).reshape(len(y), -1)
    tr, va = _split(len(y), rng)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    # "speedup": keep the 96 hidden units with the largest weight norms, in new modules
    keep = model[0].weight.norm(dim=1).argsort(descending=True)[:96].sort().values
    small0, small2 = nn.Linear(64, 96), nn.Linear(96, 10)
    with torch.no_grad():
        small0.weight.copy_(model[0].weight[keep])
        small0.bias.copy_(model[0].bias[keep])
        small2.weight.copy_(model[2].weight[:, keep])
        small2.bias.copy_(model[2].bias)
    model[0], model[2] = small0, small2  # the bug: `opt` still holds the old tensors
    loader = DataLoader(TensorDataset(torch.as_tensor(X[tr]), torch.as_tensor(y[tr])),
                        batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    Xv, yv = torch.as_tensor(X[va]), torch.as_tensor(y[va])
    ce = nn.CrossEntropyLoss()
    with nnrecipe.watch(model, opt, **watch_kwargs) as w:
        for _ in range(4):
            model.train()
            for xb, yb in loader:
                opt.zero_grad()
                loss = ce(model(xb), yb)
                loss.backward()
                opt.step()
                w.step(loss)
            model.eval()
            with torch.no_grad():
                out = model(Xv)
                w.epoch(val={"loss": float(ce(out, yv)),
                             "accuracy": float((out.argmax(1) == yv).float().mean())})
    return w


@bug(source="dotnet/docs#17721",
     symptom="AutoML on the restaurant-violations sample reaches 100% accuracy: the "
             "violation_description column alone gives the risk category, and the 53,974 rows "
             "hold only 363 distinct ones",
     cause=("shortcut-feature", "data-duplicates", "split-leakage"))
def label_given_away_by_a_column(seed: int) -> Experiment:
    """Restaurant inspections: a label-encoded violation type (65 types, each with one risk
    category) beside a few weak numeric columns; 363 distinct rows repeated to 1,500, split
    at random."""
    rng = np.random.default_rng(seed)
    n_types, n_unique = 65, 363
    risk_of_type = rng.integers(0, 3, size=n_types)
    vtype = rng.integers(0, n_types, size=n_unique)
    other = rng.normal(size=(n_unique, 5))  # inspection score, business size, ...
    X_u = np.column_stack([vtype, other]).astype(np.float32)
    y_u = risk_of_type[vtype].astype(np.int64)
    rows = rng.integers(0, n_unique, size=1500)  # the sample file repeats its rows
    X, y = X_u[rows], y_u[rows]
    tr, va = _split(len(y), rng)
    Xtr, Xva = _standardise(X[tr], X[va])
    model = lambda: nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Linear(64, 64),  # noqa: E731
                                  nn.ReLU(), nn.Linear(64, 3))
    return Experiment(model=model, train=(Xtr, y[tr]), val=(Xva, y[va]),
                      loss=nn.CrossEntropyLoss(), optimizer=_adam(), batch_size=32,
                      epochs=8, seed=seed, name="label-given-away-by-a-column")
