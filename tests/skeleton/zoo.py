"""Tiny seeded experiments of every model family the skeleton stage must handle: an LSTM, a
causal transformer, a CNN with batch norm, plus knobs that break them the classic ways."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe import Experiment
from tests.toys import mlp

# ----------------------------------------------------------------------------- LSTM


def sequences(n: int = 320, t: int = 12, f: int = 4, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Standardised noise sequences; the label says whether feature 0 sums positive."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, t, f)).astype(np.float32)
    y = (X[:, :, 0].sum(1) > 0).astype(np.int64)
    return X, y


class LSTMClassifier(nn.Module):
    """Batch-first LSTM; ``bug="view"`` reshapes (N, T, F) to (T, N, F) with ``view`` for a
    time-major LSTM (should be ``transpose``); ``bug="not-batch-first"`` feeds batch-first
    data to a time-major LSTM."""

    def __init__(self, f: int = 4, hidden: int = 16, classes: int = 2, bug: str = "",
                 bidirectional: bool = False, per_step: bool = False) -> None:
        super().__init__()
        self.bug, self.per_step = bug, per_step
        self.lstm = nn.LSTM(f, hidden, batch_first=not bug, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bug == "view":
            n, t, f = x.shape
            h, _ = self.lstm(x.view(t, n, f))
            h = h.transpose(0, 1)
        elif self.bug == "not-batch-first":
            h, _ = self.lstm(x)
        else:
            h, _ = self.lstm(x)
        if self.per_step:
            return self.head(h).transpose(1, 2)  # (N, C, T)
        return self.head(h[:, -1])


def lstm_experiment(**overrides: Any) -> Experiment:
    X, y = sequences()
    kw: dict[str, Any] = dict(
        model=lambda: LSTMClassifier(), train=(X[:240], y[:240]), val=(X[240:], y[240:]),
        loss=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.Adam(p, lr=1e-2),
        batch_size=32, epochs=3, seed=0, name="lstm")
    kw.update(overrides)
    return Experiment(**kw)


# ---------------------------------------------------------------- causal transformer

VOCAB, SEQ = 7, 10


def token_data(n: int = 320, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random tokens; the target at t is the token at t-1 (0 at t=0): learnable causally."""
    rng = np.random.default_rng(seed)
    X = rng.integers(1, VOCAB, size=(n, SEQ)).astype(np.int64)
    y = np.concatenate([np.zeros((n, 1), np.int64), X[:, :-1]], axis=1)
    return X, y


class TinyCausalTransformer(nn.Module):
    """One pre-norm encoder layer with a causal mask; outputs (N, V, T) for CrossEntropyLoss.
    ``mask``: "causal" (right), "none" (leaks), "shifted" (lets t see t+1)."""

    def __init__(self, d: int = 32, mask: str = "causal") -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, d)
        self.pos = nn.Embedding(SEQ, d)
        self.layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=64, dropout=0.0,
                                                batch_first=True, norm_first=True)
        self.head = nn.Linear(d, VOCAB)
        self.mask_kind = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        h = self.tok(x) + self.pos(torch.arange(t, device=x.device))
        mask = None
        if self.mask_kind == "causal":
            mask = nn.Transformer.generate_square_subsequent_mask(t, device=x.device)
        elif self.mask_kind == "shifted":
            mask = torch.triu(torch.full((t, t), float("-inf"), device=x.device), diagonal=2)
        h = self.layer(h, src_mask=mask)
        return self.head(h).transpose(1, 2)


def transformer_experiment(**overrides: Any) -> Experiment:
    X, y = token_data()
    kw: dict[str, Any] = dict(
        model=lambda: TinyCausalTransformer(), train=(X[:240], y[:240]), val=(X[240:], y[240:]),
        loss=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.Adam(p, lr=3e-3),
        batch_size=32, epochs=3, seed=0, name="transformer", causal=True)
    kw.update(overrides)
    return Experiment(**kw)


# ------------------------------------------------------------------------ CNN with BN


def images(n: int = 320, seed: int = 0, scale: float = 1.0, offset: float = 0.0
           ) -> tuple[np.ndarray, np.ndarray]:
    """8x8 one-channel images: a bright bar, horizontal (class 0) or vertical (class 1),
    in noise; standardised, then ``* scale + offset``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, size=(n, 1, 8, 8))
    y = rng.integers(0, 2, size=n)
    pos = rng.integers(1, 7, size=n)
    for i in range(n):
        if y[i] == 0:
            X[i, 0, pos[i], :] += 2.5
        else:
            X[i, 0, :, pos[i]] += 2.5
    X = (X - X.mean()) / X.std()
    return (X * scale + offset).astype(np.float32), y.astype(np.int64)


class SmallCNN(nn.Module):
    """conv-BN-ReLU x2, pool, dropout after the last BN (healthy); ``dropout_first`` puts a
    Dropout2d in front of the second BN (the disharmony)."""

    def __init__(self, dropout_first: bool = False, p: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()]
        if dropout_first:
            layers.append(nn.Dropout2d(p))
        layers += [nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                   nn.AdaptiveAvgPool2d(2), nn.Flatten()]
        if not dropout_first:
            layers.append(nn.Dropout(p))
        layers.append(nn.Linear(32, 2))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def cnn_experiment(**overrides: Any) -> Experiment:
    X, y = images()
    kw: dict[str, Any] = dict(
        model=lambda: SmallCNN(), train=(X[:240], y[:240]), val=(X[240:], y[240:]),
        loss=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.Adam(p, lr=3e-3),
        batch_size=32, epochs=3, seed=0, name="cnn-bn")
    kw.update(overrides)
    return Experiment(**kw)


# ------------------------------------------------------------- digits MLP (64-32-10)


def digits_mlp_experiment(seed: int = 0, **overrides: Any) -> Experiment:
    """scikit-learn's digits as 64 standardised features, a 64-32-10 MLP and nnrecipe's own
    default optimizer (Adam 3e-4, no ``optimizer`` given): a plain, healthy, slow-ish setup."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_tr, X_va, y_tr, y_va = train_test_split(X.astype(np.float32), y.astype(np.int64),
                                              test_size=0.25, stratify=y, random_state=seed)
    mean, std = X_tr.mean(0), X_tr.std(0)
    std = np.where(std > 0, std, 1.0)  # pixels constant in train: left as they are
    kw: dict[str, Any] = dict(
        model=lambda: nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
        train=((X_tr - mean) / std, y_tr), val=((X_va - mean) / std, y_va),
        loss=nn.CrossEntropyLoss(), batch_size=32, epochs=10, seed=seed, name="digits-mlp")
    kw.update(overrides)
    return Experiment(**kw)


# --------------------------------------------------------------------- broken pieces


class ViewInsteadOfTranspose(nn.Module):
    """An MLP whose forward scrambles the batch: (N, F) -> view(F, N) -> t()."""

    def __init__(self, d_in: int = 10, d_out: int = 3) -> None:
        super().__init__()
        self.net = mlp(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.view(x.shape[1], x.shape[0]).t())


class IgnoresInput(nn.Module):
    """Predicts from a learned constant; the input never reaches the output."""

    def __init__(self, d_out: int = 3) -> None:
        super().__init__()
        self.net = mlp(4, d_out)
        self.register_buffer("const", torch.ones(1, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.const.expand(len(x), 4))


class SoftmaxHead(nn.Module):
    def __init__(self, d_in: int = 10, d_out: int = 3) -> None:
        super().__init__()
        self.net = mlp(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


class DetachedBranch(nn.Module):
    """A second branch whose output is detached: its parameters never get a gradient."""

    def __init__(self, d_in: int = 10, d_out: int = 3) -> None:
        super().__init__()
        self.main = mlp(d_in, d_out)
        self.side = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + 0.1 * self.side(x).detach()


class UnseededInit(nn.Module):
    """Initialises from NumPy's unseeded default_rng: a new network for the same seed."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(10, 3)
        rng = np.random.default_rng()
        with torch.no_grad():
            w = self.net[0].weight
            w.copy_(torch.from_numpy(rng.normal(0, 0.3, size=tuple(w.shape))).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class NoisyDataset(torch.utils.data.Dataset):
    """Adds unseeded noise to each sample on read: augmentation the seed does not govern."""

    def __init__(self, X: np.ndarray, y: np.ndarray, noise: float = 0.3) -> None:
        self.X, self.y, self.noise = torch.from_numpy(X), torch.from_numpy(y), noise
        self.rng = np.random.default_rng()

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.from_numpy(self.rng.normal(0, self.noise, size=self.X[i].shape)).float()
        return self.X[i] + noise, self.y[i]


class PlainDataset(torch.utils.data.Dataset):
    """A map-style dataset without augmentation (not a TensorDataset)."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[i], self.y[i]


# ------------------------------------------------------------ broken training steps


def step_without_zero_grad(model: nn.Module, batch: Any, loss_fn: Any, optimizer: Any
                           ) -> torch.Tensor:
    x, y = batch
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def step_zero_grad_after(model: nn.Module, batch: Any, loss_fn: Any, optimizer: Any
                         ) -> torch.Tensor:
    """Healthy: zeroes after the update instead of before the forward."""
    x, y = batch
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss


def step_leaves_eval_mode(model: nn.Module, batch: Any, loss_fn: Any, optimizer: Any
                          ) -> torch.Tensor:
    """Evaluates after each update and forgets model.train()."""
    x, y = batch
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        model(x)
    return loss


def step_with_eval_logging(model: nn.Module, batch: Any, loss_fn: Any, optimizer: Any
                           ) -> torch.Tensor:
    """Healthy: a no-grad eval forward for logging, then back to train mode."""
    x, y = batch
    model.train()
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        model(x)
    model.train()
    return loss


def step_feeds_zeros(model: nn.Module, batch: Any, loss_fn: Any, optimizer: Any
                     ) -> torch.Tensor:
    """Feeds a placeholder instead of the batch's inputs."""
    x, y = batch
    optimizer.zero_grad()
    loss = loss_fn(model(torch.zeros_like(x)), y)
    loss.backward()
    optimizer.step()
    return loss


def step_squeezes_targets(model: nn.Module, batch: Any, loss_fn: Any, optimizer: Any
                          ) -> torch.Tensor:
    """Regression step that flattens the targets to (N,) against (N, 1) outputs."""
    x, y = batch
    optimizer.zero_grad()
    loss = loss_fn(model(x), y.reshape(-1))
    loss.backward()
    optimizer.step()
    return loss


def step_with_unseeded_noise(model: nn.Module, batch: Any, loss_fn: Any, optimizer: Any
                             ) -> torch.Tensor:
    """Adds input noise from a fresh, unseeded generator on every call."""
    x, y = batch
    g = torch.Generator(device=x.device).manual_seed(int(np.random.default_rng().integers(2**31)))
    optimizer.zero_grad()
    loss = loss_fn(model(x + 0.1 * torch.randn(x.shape, generator=g, device=x.device)), y)
    loss.backward()
    optimizer.step()
    return loss


# ------------------------------------------------------------------------- running


def run_checks(exp: Experiment, *names: str, **options: Any) -> tuple[list, dict, Any]:
    """Run the named skeleton checks (all when none): (findings, {name: CheckResult}, ctx)."""
    from nnrecipe.core.context import Context
    from nnrecipe.core.runner import run_stages
    from nnrecipe.core.validate import validate_experiment

    ctx = Context(exp, options=options or None)
    validate_experiment(ctx)
    res = run_stages(ctx, ["skeleton"], only=list(names) or None)
    checks = {c.name: c for s in res.stages for c in s.checks}
    return res.findings, checks, ctx


def codes(findings: list, severity: str | None = None) -> set[str]:
    return {f.code for f in findings if severity is None or f.severity.value == severity}


# ------------------------------------------- parameters the module system cannot see


class ListOfLayers(nn.Module):
    """The hidden layers in a Python list: invisible to model.parameters()."""

    def __init__(self, d_in: int = 10, d_out: int = 3, hidden: int = 32) -> None:
        super().__init__()
        self.blocks = [nn.Linear(d_in, hidden), nn.Linear(hidden, hidden)]
        self.head = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = torch.relu(block(x))
        return self.head(x)


class DictOfLayers(nn.Module):
    """Per-branch encoders in a Python dict."""

    def __init__(self, d_in: int = 10, d_out: int = 3) -> None:
        super().__init__()
        self.encoders = {"a": nn.Linear(d_in, 16), "b": nn.Linear(d_in, 16)}
        self.head = nn.Linear(32, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([torch.relu(self.encoders[k](x)) for k in ("a", "b")], dim=1)
        return self.head(h)


class LayerInForward(nn.Module):
    """Builds a layer inside forward: a freshly initialised layer on every call."""

    def __init__(self, d_in: int = 10, d_out: int = 3) -> None:
        super().__init__()
        self.body = nn.Linear(d_in, 32)
        self.d_out = d_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.Linear(32, self.d_out)(torch.relu(self.body(x)))


class TensorAttribute(nn.Module):
    """A learnable scale stored as a plain tensor with requires_grad, not an nn.Parameter."""

    def __init__(self, d_in: int = 10, d_out: int = 3) -> None:
        super().__init__()
        self.net = mlp(d_in, d_out)
        self.scale = torch.ones(d_out, requires_grad=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.scale


class HeadOnFirstForward(nn.Module):
    """Builds its head on the first forward ("we only know the width then"): registered, but
    after the optimizer was built from model.parameters()."""

    def __init__(self, d_in: int = 10, d_out: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, 32), nn.ReLU())
        self.head: nn.Module | None = None
        self.d_out = d_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        if self.head is None:
            self.head = nn.Linear(h.shape[1], self.d_out).to(h.device)
        return self.head(h)


def step_building_its_optimizer(lr: float = 1e-3, kind: str = "adam") -> Any:
    """A user step that builds a new optimizer on every call (and ignores the one passed)."""

    def step(model: nn.Module, batch: Any, loss_fn: Any, optimizer: Any) -> torch.Tensor:
        opt = (torch.optim.Adam(model.parameters(), lr=lr) if kind == "adam"
               else torch.optim.SGD(model.parameters(), lr=lr))
        x, y = batch
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


# ----------------------------------------- healthy look-alikes for the same checks


class TiedAutoencoder(nn.Module):
    """The decoder reuses the encoder's weight (weight tying): one leaf used twice."""

    def __init__(self, d_in: int = 10, d_out: int = 3) -> None:
        super().__init__()
        self.enc = nn.Linear(d_in, 16)
        self.dec_bias = nn.Parameter(torch.zeros(d_in))
        self.head = nn.Linear(16 + d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.enc(x))
        recon = nn.functional.linear(h, self.enc.weight.t(), self.dec_bias)
        return self.head(torch.cat([h, recon], dim=1))


class TiedLM(nn.Module):
    """A tiny language model whose output projection is the embedding (nanoGPT-style tying,
    plus a plain-list alias of the embedding kept to avoid registering it twice)."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, d)
        self.rnn = nn.GRU(d, d, batch_first=True)
        self.out = nn.Linear(d, VOCAB, bias=False)
        self.out.weight = self.tok.weight
        self._alias = [self.tok]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.tok(x))
        return self.out(h).transpose(1, 2)


class FrozenFirstLayer(nn.Module):
    """A "pretrained" first layer frozen on purpose (requires_grad=False)."""

    def __init__(self, d_in: int = 10, d_out: int = 3) -> None:
        super().__init__()
        self.net = mlp(d_in, d_out)
        for p in self.net[0].parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Parametrized(nn.Module):
    """Weight norm and a custom parametrization (torch.nn.utils.parametrize),
    and an RNN-style initial state made in forward with requires_grad (not a parameter)."""

    def __init__(self, d_in: int = 10, d_out: int = 3) -> None:
        super().__init__()
        from torch.nn.utils import parametrize
        from torch.nn.utils.parametrizations import weight_norm

        class Symmetric(nn.Module):
            def forward(self, w: torch.Tensor) -> torch.Tensor:
                return w.triu() + w.triu(1).t()

        self.a = weight_norm(nn.Linear(d_in, 16))
        self.b = nn.Linear(16, 16)
        parametrize.register_parametrization(self.b, "weight", Symmetric())
        self.c = nn.Linear(16, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = torch.zeros(x.shape[0], 16, requires_grad=True)
        return self.c(torch.relu(self.b(torch.relu(self.a(x)) + h0)))
