"""Real bugs, part A: the training loop and the optimisation.

Each case ports one reported bug faithfully (the same mistake in the same kind of model and
loss) onto offline data, small enough to run in seconds. ``cause`` lists the codes a perfect
tool would emit for it; they were chosen from the bug, before nnrecipe ran on the case.
Bugs that live in the user's step are ported as ``train_step`` (every check and the trainer
call it); bugs that live around the step (the schedule, the accumulation loop) keep the
user's own loop under ``nnrecipe.watch`` (mode ``watch``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from healthy.models import FlattenCE
from sklearn.model_selection import train_test_split
from torch import nn

import nnrecipe
from nnrecipe import Experiment

from ._common import digits_flat, digits_images, lm_sequences, loaders
from .registry import bug

Split = tuple[np.ndarray, np.ndarray]


def _split(X: np.ndarray, y: np.ndarray, seed: int, stratify: bool = False) -> dict[str, Split]:
    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.2, random_state=seed,
                                              stratify=y if stratify else None)
    return {"train": (X_tr, y_tr), "val": (X_va, y_va)}


def _step_without_zero_grad(model: nn.Module, batch: Any, loss_fn: Any,
                            opt: torch.optim.Optimizer) -> torch.Tensor:
    """The reported step: forward, backward, step; ``zero_grad()`` nowhere."""
    x, y = batch
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss


# ================================================================== gradients not zeroed


@bug(source="IBM/aihwkit#446",
     symptom="the simple-layer examples never call opt.zero_grad(): over 10 iterations the "
             "loss falls to 0.06, then climbs back to 0.87",
     cause=("grads-not-zeroed",))
def aihwkit_simple_layer_no_zero_grad(seed: int) -> Experiment:
    """aihwkit's examples/01_simple_layer.py: one 4->2 linear layer, MSE, SGD lr 0.1, inputs in
    [0, 0.5] as in the example; its loop forgets zero_grad (a float Linear stands in for the
    analog layer)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 0.5, size=(400, 4)).astype(np.float32)
    W = np.array([[1.2, 0.5], [0.9, 0.3], [1.1, 0.6], [0.8, 0.2]])
    y = (X @ W + rng.normal(0, 0.02, size=(400, 2))).astype(np.float32)
    s = _split(X, y, seed)
    return Experiment(model=lambda: nn.Linear(4, 2), train=s["train"], val=s["val"],
                      loss=nn.MSELoss(), optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                      task="regression", batch_size=16, epochs=10, seed=seed,
                      train_step=_step_without_zero_grad, name="aihwkit-no-zero-grad")


@bug(source="fchollet/deep-learning-with-python-notebooks#293",
     symptom="the chapter 7 PyTorch custom train_step never zeroes the gradients, and the "
             "results are terrible",
     cause=("grads-not-zeroed",))
def dlwp_custom_train_step_no_zero_grad(seed: int) -> Experiment:
    """Deep Learning with Python ch. 7, PyTorch backend: the MNIST dense model (512 ReLU,
    dropout 0.5, 10 outputs), sparse categorical cross-entropy, RMSprop 1e-3, batch 128, in a
    custom train_step that omits zero_grad; on the digits scaled to [0, 1]."""
    s = digits_flat(seed)
    return Experiment(
        model=lambda: nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Dropout(0.5),
                                    nn.Linear(512, 10)),
        train=s["train"], val=s["val"], loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.RMSprop(p, lr=1e-3), batch_size=128, epochs=8,
        seed=seed, train_step=_step_without_zero_grad, name="dlwp-no-zero-grad")


# ============================================================ probabilities into the loss


@bug(source="https://discuss.pytorch.org/t/cross-entropy-loss-is-not-decreasing/43814",
     symptom="the CrossEntropy loss does not decrease: it stays at 2.30 (chance for 10 "
             "classes) epoch after epoch; the model ended in a softmax",
     cause=("double-softmax",))
def softmax_into_cross_entropy(seed: int) -> Experiment:
    """The forum thread's classifier: ReLU layers, then nn.Softmax as the last layer, fed to
    nn.CrossEntropyLoss (which applies log_softmax again); Adam 1e-3, 10 classes; on the
    8x8 digits."""
    s = digits_flat(seed)
    return Experiment(
        model=lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64),
                                    nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1)),
        train=s["train"], val=s["val"], loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), batch_size=64, epochs=10,
        seed=seed, name="softmax-into-cross-entropy")


class AuxClassifier(nn.Module):
    """ACGAN's discriminator, classification head only: strided convs with LeakyReLU and
    dropout, then Linear + Softmax (the bug: NLLLoss expects log-probabilities)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, 1, 1), nn.LeakyReLU(0.2), nn.Dropout(0.5),
            nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.LeakyReLU(0.2), nn.Dropout(0.5))
        self.fc_aux = nn.Linear(32 * 4 * 4, classes)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.softmax(self.fc_aux(self.features(x).flatten(1)))


@bug(source="clvrai/ACGAN-PyTorch#4",
     symptom="the auxiliary classifier feeds Softmax outputs to NLLLoss, which expects "
             "LogSoftmax: the class loss is computed on probabilities (the PR fixing issue #3)",
     cause=("double-softmax",))
def acgan_softmax_with_nllloss(seed: int) -> Experiment:
    """ACGAN-PyTorch's discriminator class head: Softmax + NLLLoss, Adam 2e-4 (betas 0.5,
    0.999) as in the repository; the real images only (the 8x8 digits)."""
    s = digits_images(seed)
    return Experiment(model=AuxClassifier, train=s["train"], val=s["val"], loss=nn.NLLLoss(),
                      optimizer=lambda p: torch.optim.Adam(p, lr=2e-4, betas=(0.5, 0.999)),
                      batch_size=64, epochs=8, seed=seed, name="acgan-softmax-nllloss")


class NCF(nn.Module):
    """daisyRec's pointwise neural collaborative filtering: user and item embeddings, an MLP,
    one output unit, then a sigmoid (the bug: the loss is BCEWithLogitsLoss)."""

    def __init__(self, users: int, items: int, d: int = 16) -> None:
        super().__init__()
        self.user = nn.Embedding(users, d)
        self.item = nn.Embedding(items, d)
        self.mlp = nn.Sequential(nn.Linear(2 * d, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.user(x[:, 0]), self.item(x[:, 1])], dim=1)
        return torch.sigmoid(self.mlp(h))


@bug(source="yudi-mars/daisyRec#15",
     symptom="the model applies a sigmoid and the loss is BCEWithLogitsLoss, which applies "
             "it again: the loss does not converge",
     cause=("double-softmax", "output-activation"))
def ncf_sigmoid_into_bce_with_logits(seed: int) -> Experiment:
    """daisyRec's point-wise recommender: (user, item) pairs with implicit feedback labels
    from a seeded low-rank preference model, embeddings + MLP + sigmoid, BCEWithLogitsLoss,
    Adam 1e-3."""
    rng = np.random.default_rng(seed)
    users, items, n = 60, 40, 4000
    U, V = rng.normal(size=(users, 4)), rng.normal(size=(items, 4))
    pairs = np.stack([rng.integers(0, users, n), rng.integers(0, items, n)], axis=1)
    logit = (U[pairs[:, 0]] * V[pairs[:, 1]]).sum(1)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * logit))).astype(np.float32).reshape(-1, 1)
    s = _split(pairs.astype(np.int64), y, seed)
    return Experiment(model=lambda: NCF(users, items), train=s["train"], val=s["val"],
                      loss=nn.BCEWithLogitsLoss(), task="classification",
                      optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), batch_size=128,
                      epochs=8, seed=seed, name="ncf-sigmoid-bce-with-logits")


# ================================================================== left in eval mode


class TokenClassifier(nn.Module):
    """A small transformer text classifier with dropout 0.1 (a BERT stand-in)."""

    def __init__(self, vocab: int = 24, classes: int = 3, d: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 4, 64, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.encoder(self.embed(x)).mean(1)))


def _evaluating_step(every: int) -> Any:
    """A train step that, every ``every`` steps, evaluates the model the way the reported
    loops do (model.eval() + no_grad) and never switches back to train mode."""
    count = {"n": 0}

    def step(model: nn.Module, batch: Any, loss_fn: Any, opt: torch.optim.Optimizer
             ) -> torch.Tensor:
        x, y = batch
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        count["n"] += 1
        if count["n"] % every == 0:  # evaluate_during_training
            model.eval()
            with torch.no_grad():
                model(x)
        return loss

    return step


@bug(source="ThilinaRajapakse/simpletransformers#941",
     symptom="with evaluate_during_training=True the model stays in eval mode after each "
             "evaluation, so dropout is off for the rest of training; the training loss "
             "curve changes shape after the first evaluation",
     cause=("eval-mode-training",))
def evaluate_during_training_leaves_eval(seed: int) -> Experiment:
    """simpletransformers' training loop with evaluate_during_training: a dropout transformer
    text classifier (AdamW 4e-5 is BERT's; 1e-3 for this small model), an evaluation every
    20 steps that calls model.eval() and never model.train(); on token sequences whose label
    is the most frequent of three marker tokens."""
    from healthy import data as hdata

    s = hdata.tokens_majority(seed, n=1500, vocab=24)
    return Experiment(model=TokenClassifier, train=s["train"], val=s["val"],
                      loss=nn.CrossEntropyLoss(),
                      optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3), batch_size=32,
                      epochs=6, seed=seed, train_step=_evaluating_step(20),
                      name="evaluate-during-training-eval-mode")


class Policy(nn.Module):
    """An ACT-like policy head: observation MLP with batch norm and dropout 0.1, action out."""

    def __init__(self, d_obs: int = 12, d_act: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_obs, 64), nn.BatchNorm1d(64), nn.ReLU(),
                                 nn.Dropout(0.1), nn.Linear(64, 64), nn.ReLU(),
                                 nn.Dropout(0.1), nn.Linear(64, d_act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@bug(source="huggingface/lerobot#3668",
     symptom="eval_policy() calls policy.eval() and never restores train mode, silently "
             "disabling dropout and freezing batch-norm statistics for the rest of training",
     cause=("eval-mode-training",))
def eval_policy_never_restores_train(seed: int) -> Experiment:
    """lerobot's training loop with periodic evaluation: a behaviour-cloning policy (batch
    norm + dropout) regressing actions with L1 loss, AdamW 1e-4 -> 1e-3 here; eval_policy runs
    every 25 steps and leaves the policy in eval mode; on a seeded non-linear expert."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(1500, 12)).astype(np.float32)
    A = rng.normal(size=(12, 3)) / 3
    y = (np.tanh(X @ A) + 0.3 * np.sin(X[:, :3]) + rng.normal(0, 0.05, (1500, 3)))
    s = _split(X, y.astype(np.float32), seed)
    return Experiment(model=Policy, train=s["train"], val=s["val"], loss=nn.L1Loss(),
                      optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3), task="regression",
                      batch_size=64, epochs=8, seed=seed, train_step=_evaluating_step(25),
                      name="lerobot-eval-mode")


# =========================================================== outputs vs targets shapes


class InceptionLite(nn.Module):
    """A small InceptionTime-style 1-D conv regressor: (N, C, T) -> (N, 1)."""

    def __init__(self, c_in: int = 1) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv1d(c_in, 8, k, padding=k // 2) for k in (3, 5, 9)])
        self.bn = nn.BatchNorm1d(24)
        self.head = nn.Linear(24, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(torch.cat([c(x) for c in self.convs], 1)))
        return self.head(h.mean(-1))


@bug(source="timeseriesAI/tsai#22",
     symptom="'Using a target size (torch.Size([16])) that is different to the input size "
             "(torch.Size([16, 1]))' warning during fit, and the model does not train "
             "across epochs",
     cause=("target-shape-mismatch",))
def tsai_regression_target_1d(seed: int) -> Experiment:
    """tsai's time-series regression: an InceptionTime-style 1-D CNN with a (N, 1) output,
    targets kept as (N,), MSELoss, Adam 1e-3, batch 16; the target is a seeded series'
    amplitude x frequency (standardised)."""
    rng = np.random.default_rng(seed)
    n, t = 1200, 48
    amp, freq = rng.uniform(0.5, 2, n), rng.uniform(0.05, 0.25, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    X = amp[:, None] * np.sin(2 * np.pi * freq[:, None] * np.arange(t) + phase[:, None])
    X = (X + rng.normal(0, 0.2, (n, t)))[:, None, :].astype(np.float32)
    y = amp * freq * 4
    y = ((y - y.mean()) / y.std()).astype(np.float32)  # shape (N,): the bug
    s = _split(X, y, seed)
    return Experiment(model=InceptionLite, train=s["train"], val=s["val"], loss=nn.MSELoss(),
                      optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), task="regression",
                      batch_size=16, epochs=6, seed=seed, name="tsai-target-1d")


# ======================================================= parameters the optimizer misses


class CharRNN(nn.Module):
    """The char-RNN name classifier: embedding, a tanh RNN, a linear head, log_softmax."""

    def __init__(self, letters: int = 20, hidden: int = 64, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(letters, 16)
        self.rnn = nn.RNN(16, hidden, batch_first=True)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.rnn(self.embed(x))
        return F.log_softmax(self.out(h[-1]), dim=1)


def _names(seed: int, n: int = 1600, length: int = 8, letters: int = 20, classes: int = 4
           ) -> dict[str, Split]:
    """Synthetic 'names': each language has its own letter bigram table."""
    rng = np.random.default_rng(seed)
    tables = np.cumsum(rng.dirichlet(np.full(letters, 0.3), size=(classes, letters)), axis=2)
    y = rng.integers(0, classes, n)
    X = np.zeros((n, length), dtype=np.int64)
    X[:, 0] = rng.integers(0, letters, n)
    u = rng.random((n, length))
    for t in range(1, length):
        c = tables[y, X[:, t - 1]]
        X[:, t] = np.minimum((u[:, t, None] > c).sum(1), letters - 1)
    return _split(X, y.astype(np.int64), seed, stratify=True)


@bug(source="spro/practical-pytorch#9",
     symptom="with optimizer.step() instead of the manual update the loss stays big and "
             "goes up and down without diminishing: the model had been instantiated twice "
             "and the optimizer held the first instance's parameters",
     cause=("params-not-in-optimizer",))
def optimizer_holds_first_instance(seed: int) -> Experiment:
    """practical-pytorch's char-RNN classification: the RNN is created once after its class
    definition (and the optimizer built on it), then created again before the training loop;
    NLLLoss on log_softmax, SGD (lr 0.005 per sample in the tutorial; 0.1 on batches of 32)."""
    s = _names(seed)
    first = CharRNN()  # the instance the optimizer was built on

    def opt(_params: Any) -> torch.optim.Optimizer:
        return torch.optim.SGD(first.parameters(), lr=0.1)

    return Experiment(model=CharRNN, train=s["train"], val=s["val"], loss=nn.NLLLoss(),
                      optimizer=opt, batch_size=32, epochs=8, seed=seed,
                      name="optimizer-first-instance")


def _forward_without_grad(model: nn.Module, batch: Any, loss_fn: Any,
                          opt: torch.optim.Optimizer) -> torch.Tensor:
    """The forward ran without autograd, 'element 0 of tensors does not require grad' was
    silenced with ``loss.requires_grad = True``."""
    x, y = batch
    opt.zero_grad()
    with torch.no_grad():
        out = model(x)
    loss = loss_fn(out, y)
    loss.requires_grad = True
    loss.backward()
    opt.step()
    return loss


@bug(source="ronghuaiyang/arcface-pytorch#56",
     symptom="'element 0 of tensors does not require grad' was silenced by setting "
             "loss.requires_grad = True; training then runs but the loss does not decline "
             "and the accuracy stays at zero",
     cause=("params-not-updating",))
def loss_requires_grad_forced(seed: int) -> Experiment:
    """arcface-pytorch's training step with the graph cut upstream of the loss (the forward
    outside autograd) and loss.requires_grad forced; a small CNN classifier, CrossEntropy, SGD
    lr 0.1 momentum 0.9 (the repository's), on the 8x8 digits."""
    s = digits_images(seed)

    def net() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                             nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    return Experiment(model=net, train=s["train"], val=s["val"], loss=nn.CrossEntropyLoss(),
                      optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
                      batch_size=64, epochs=6, seed=seed, train_step=_forward_without_grad,
                      name="loss-requires-grad-forced")


# ============================================================== learning rate too high


class WordLSTM(nn.Module):
    """A word-level LSTM language model: embedding, 2-layer LSTM, linear decoder."""

    def __init__(self, vocab: int = 24, d: int = 32, hidden: int = 64,
                 bidirectional: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.rnn = nn.LSTM(d, hidden, 2 if not bidirectional else 1, batch_first=True,
                           bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.embed(x))[0])


@bug(source="rajveermalviya/language-modeling#3",
     symptom="the training loss does not really go down even after many epochs; the config "
             "set Adam's learning rate to 1.0, and Adam's default 0.001 trained much better",
     cause=("lr-too-high", "loss-diverging"))
def language_model_adam_lr_1(seed: int) -> Experiment:
    """The repository's word LSTM language model with the config's optimizer: Adam at lr 1.0;
    CrossEntropy over next tokens, on windows of a Markov token stream."""
    s = lm_sequences(seed)
    return Experiment(model=WordLSTM, train=s["train"], val=s["val"], loss=FlattenCE(),
                      optimizer=lambda p: torch.optim.Adam(p, lr=1.0), task="classification",
                      batch_size=32, epochs=6, seed=seed, name="lm-adam-lr-1")


@bug(source="OpenNMT/OpenNMT-py#805",
     symptom="with -optim adam the perplexity stays at a high constant value and the "
             "accuracy varies erratically: the learning rate was left at 1, SGD's default",
     cause=("lr-too-high", "loss-diverging"))
def seq2seq_adam_with_sgd_lr(seed: int) -> Experiment:
    """OpenNMT-py's default 2-layer LSTM with -optim adam and the SGD default learning rate 1;
    token-level transduction (each output token a fixed function of the input token and its
    left neighbour) stands in for the demo translation data."""
    rng = np.random.default_rng(seed)
    n, length, vocab = 1500, 16, 30
    X = rng.integers(0, vocab, size=(n, length))
    prev = np.concatenate([np.zeros((n, 1), dtype=np.int64), X[:, :-1]], axis=1)
    y = (X * 7 + prev) % vocab
    s = _split(X.astype(np.int64), y.astype(np.int64), seed)
    return Experiment(model=lambda: WordLSTM(vocab=vocab), train=s["train"], val=s["val"],
                      loss=FlattenCE(), optimizer=lambda p: torch.optim.Adam(p, lr=1.0),
                      task="classification", batch_size=64, epochs=6, seed=seed,
                      name="opennmt-adam-lr-1")


# ======================================================================= schedules


class SRNet(nn.Module):
    """A small SRResNet-style generator: conv, two residual conv blocks, conv out."""

    def __init__(self, c: int = 32) -> None:
        super().__init__()
        self.head = nn.Conv2d(1, c, 3, padding=1)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.PReLU(),
                                                   nn.Conv2d(c, c, 3, padding=1))
                                     for _ in range(2)])
        self.tail = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        for b in self.blocks:
            h = h + b(h)
        return x + self.tail(h)


def _low_res(seed: int) -> dict[str, Split]:
    """Super-resolution pairs from the digits: input = 2x2-average-pooled and upsampled
    back (the bicubic stand-in), target = the original image."""
    s = digits_images(seed)
    out = {}
    for k, (x, _) in s.items():
        t = torch.as_tensor(x)
        lo = F.interpolate(F.avg_pool2d(t, 2), scale_factor=2, mode="nearest")
        out[k] = (lo.numpy(), x)
    return out


@bug(source="Lornatang/SRGAN-PyTorch#1",
     symptom="StepLR(step_size=epochs // 2, gamma=0.1) is stepped at every training step, "
             "not every epoch, so the learning rate quickly becomes zero and the model does "
             "not seem to train",
     cause=("lr-schedule-misstepped",), mode="watch")
def srgan_steplr_per_batch(seed: int, watch_kwargs: dict[str, Any]) -> Any:
    """SRGAN-PyTorch's generator pre-training: MSE on super-resolved images, Adam 1e-3, a
    StepLR meant per epoch (step_size = epochs // 2, gamma 0.1) stepped every batch; on
    upsampled 4x4 -> 8x8 digits."""
    s = _low_res(seed)
    epochs = 10
    loader, (Xv, yv) = loaders(s, 32, seed)
    model = SRNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=epochs // 2, gamma=0.1)
    mse = nn.MSELoss()
    with nnrecipe.watch(model, opt, **watch_kwargs) as w:
        for _ in range(epochs):
            model.train()
            for x, y in loader:
                opt.zero_grad()
                loss = mse(model(x), y)
                loss.backward()
                opt.step()
                sched.step()  # the bug: inside the batch loop
                w.step(loss)
            model.eval()
            with torch.no_grad():
                w.epoch(val={"loss": float(mse(model(Xv), yv))})
    return w


class TinyUNet(nn.Module):
    """A two-level U-Net for binary segmentation (logits out)."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c),
                                  nn.ReLU())
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.dec = nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        return self.dec(torch.cat([self.up(e2), e1], 1))


def _blobs(seed: int, n: int = 800, size: int = 16) -> dict[str, Split]:
    """Noisy images of one or two discs; the mask is the discs (a lesion-segmentation
    stand-in)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    masks = np.zeros((n, 1, size, size), dtype=np.float32)
    for i in range(n):
        for _ in range(rng.integers(1, 3)):
            cy, cx, r = rng.uniform(3, size - 3), rng.uniform(3, size - 3), rng.uniform(1.5, 4)
            disc = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.float32)
            masks[i, 0] = np.maximum(masks[i, 0], disc)
    X = (masks * 1.0 + rng.normal(0, 0.5, masks.shape)).astype(np.float32)
    X = (X - X.mean()) / X.std()
    return _split(X, masks, seed)


@bug(source="ivadomed/ivadomed#55",
     symptom="the scheduler was stepped in the batch loop instead of the epoch loop, so the "
             "learning rate was updated after each batch instead of after each epoch",
     cause=("lr-schedule-misstepped",), mode="watch")
def cosine_schedule_stepped_per_batch(seed: int, watch_kwargs: dict[str, Any]) -> Any:
    """ivadomed's segmentation training: a U-Net, BCE-with-logits on masks, Adam 1e-3 with
    CosineAnnealingLR(T_max = number of epochs) stepped in the batch loop (so the rate falls
    to zero within the first epoch and cycles); on synthetic lesion images."""
    s = _blobs(seed)
    epochs = 8
    loader, (Xv, yv) = loaders(s, 16, seed)
    model = TinyUNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    crit = nn.BCEWithLogitsLoss()
    with nnrecipe.watch(model, opt, **watch_kwargs) as w:
        for _ in range(epochs):
            model.train()
            for x, y in loader:
                opt.zero_grad()
                loss = crit(model(x), y)
                loss.backward()
                opt.step()
                sched.step()  # the bug: per batch
                w.step(loss)
            model.eval()
            with torch.no_grad():
                w.epoch(val={"loss": float(crit(model(Xv), yv))})
    return w


# ================================================================ gradient accumulation


class PatchDecoder(nn.Module):
    """A small MLP decoder from a latent representation to pixels (RAE's decoder stand-in)."""

    def __init__(self, d_in: int = 16, d_out: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, 128), nn.GELU(), nn.Linear(128, 128),
                                 nn.GELU(), nn.Linear(128, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@bug(source="bytetriper/RAE#67",
     symptom="optimizer.zero_grad() is called inside the micro-batch loop, so gradients are "
             "cleared every micro-batch instead of being accumulated",
     cause=("accumulation-discarded",), mode="watch")
def zero_grad_inside_accumulation(seed: int, watch_kwargs: dict[str, Any]) -> Any:
    """RAE's train.py: gradient accumulation over 4 micro-batches with zero_grad inside the
    inner loop; a decoder from frozen 16-d representations (PCA of the digits) back to the
    pixels, MSE, AdamW 1e-3; the loop declares its accumulation to the monitor."""
    from sklearn.decomposition import PCA

    s = digits_flat(seed)
    pca = PCA(16, random_state=seed).fit(s["train"][0])
    rep = {k: (pca.transform(x).astype(np.float32), x) for k, (x, _) in s.items()}
    loader, (Xv, yv) = loaders(rep, 16, seed)
    model = PatchDecoder()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    mse = nn.MSELoss()
    accum = 4
    with nnrecipe.watch(model, opt, accumulate=accum, **watch_kwargs) as w:
        for _ in range(8):
            model.train()
            batches = list(loader)
            for i in range(0, len(batches) - accum + 1, accum):
                total = 0.0
                for x, y in batches[i:i + accum]:
                    opt.zero_grad(set_to_none=True)  # the bug: inside the micro-batch loop
                    loss = mse(model(x), y) / accum
                    loss.backward()
                    total += float(loss.detach())
                opt.step()
                w.step(total)
            model.eval()
            with torch.no_grad():
                w.epoch(val={"loss": float(mse(model(Xv), yv))})
    return w


# ============================================================== more reported cases


@bug(source="pytorch/examples#846",
     symptom="the Transformer of word_language_model, trained with the example's lr 20 and "
             "gradient clipping meant for RNNs, always predicts the most frequent token "
             "(',' repeated); lr 0.1 without clipping gave fluent text",
     cause=("lr-too-high", "loss-diverging"), mode="watch")
def examples_transformer_lm_lr_20(seed: int, watch_kwargs: dict[str, Any]) -> Any:
    """word_language_model with --model Transformer and the RNN defaults: SGD lr 20, gradient
    norm clipped to 0.25, lr / 4 when validation stalls, BPTT 35; the tutorial-style
    TransformerModel, on a Markov token stream."""
    from ._common import batchify, get_batch, markov_tokens
    from .cases_healthy import TransformerModel

    vocab = 24
    stream = markov_tokens(seed, 24000, vocab)
    train_data, val_data = batchify(stream[:20000], 20), batchify(stream[20000:], 10)
    model = TransformerModel(vocab)
    crit = nn.CrossEntropyLoss()
    lr, best, bptt = 20.0, float("inf"), 35
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with nnrecipe.watch(model, opt, **watch_kwargs) as w:
        for _ in range(5):
            model.train()
            for i in range(0, train_data.size(0) - 1, bptt):
                data, targets = get_batch(train_data, i, bptt)
                model.zero_grad()
                loss = crit(model(data).view(-1, vocab), targets)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
                opt.step()
                w.step(loss)
            model.eval()
            total = 0.0
            with torch.no_grad():
                for i in range(0, val_data.size(0) - 1, bptt):
                    data, targets = get_batch(val_data, i, bptt)
                    total += len(data) * float(crit(model(data).view(-1, vocab), targets))
            val_loss = total / (len(val_data) - 1)
            w.epoch(val={"loss": val_loss})
            if val_loss < best:
                best = val_loss
            else:
                lr /= 4.0
                for g in opt.param_groups:
                    g["lr"] = lr
    return w


class KWSGRU(nn.Module):
    """A GRU keyword spotter over filterbank frames with max pooling over time."""

    def __init__(self, d_in: int = 20, hidden: int = 64, keywords: int = 3) -> None:
        super().__init__()
        self.gru = nn.GRU(d_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, keywords)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(x)[0].max(1).values)


@bug(source="wenet-e2e/wekws#73",
     symptom="the executor calls optimizer.step() but never optimizer.zero_grad(), so every "
             "update applies all past gradients (the fix adds zero_grad before backward)",
     cause=("grads-not-zeroed",))
def kws_executor_no_zero_grad(seed: int) -> Experiment:
    """wekws's training executor without zero_grad: a GRU keyword spotter on filterbank-like
    frames (each keyword a spectral pattern at a random time, others silence + noise),
    CrossEntropy, Adam 1e-3, batch 32."""
    rng = np.random.default_rng(seed)
    n, t, d = 1200, 40, 20
    y = rng.integers(0, 3, n)
    X = rng.normal(0, 1, size=(n, t, d))
    patterns = rng.normal(0, 1.5, size=(3, 6, d))
    start = rng.integers(0, t - 6, n)
    for i in range(n):
        if y[i] > 0:
            X[i, start[i]:start[i] + 6] += patterns[y[i]]
    s = _split(X.astype(np.float32), y.astype(np.int64), seed, stratify=True)
    return Experiment(model=KWSGRU, train=s["train"], val=s["val"],
                      loss=nn.CrossEntropyLoss(),
                      optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), batch_size=32,
                      epochs=6, seed=seed, train_step=_step_without_zero_grad,
                      name="kws-no-zero-grad")


@bug(source="Hsintien-Ng/idinvert_pytorch-reproduced#1",
     symptom="optimizer_D.zero_grad() is missing before the discriminator's backward in "
             "training_loop_encoder.py (the author confirmed and fixed it)",
     cause=("grads-not-zeroed",), mode="watch")
def gan_inversion_discriminator_no_zero_grad(seed: int, watch_kwargs: dict[str, Any]) -> Any:
    """In-domain GAN inversion's encoder training: a fixed generator (a frozen random decoder
    stands in for the pretrained StyleGAN), an encoder trained to reconstruct real images
    plus an adversarial term, and a discriminator trained on real vs reconstructed images
    with softplus losses, Adam 1e-4 (0.9, 0.99) for both; the discriminator step never zeroes
    its gradients. The loop watches the discriminator and its optimizer; the digits in [0, 1]."""
    s = digits_flat(seed)
    loader, _ = loaders({"train": s["train"], "val": s["val"]}, 32, seed)
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(16, 64), nn.Sigmoid()).requires_grad_(False)
    E = nn.Sequential(nn.Linear(64, 128), nn.LeakyReLU(0.2), nn.Linear(128, 16))
    D = nn.Sequential(nn.Linear(64, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1))
    opt_e = torch.optim.Adam(E.parameters(), lr=1e-4, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.9, 0.99))
    with nnrecipe.watch(D, opt_d, **watch_kwargs) as w:
        for _ in range(6):
            for x, _y in loader:
                fake = G(E(x)).detach()
                loss_d = F.softplus(D(fake)).mean() + F.softplus(-D(x)).mean()
                loss_d.backward()  # the bug: no opt_d.zero_grad() before this
                opt_d.step()
                w.step(loss_d)
                opt_e.zero_grad()
                rec = G(E(x))
                loss_e = F.mse_loss(rec, x) + 0.1 * F.softplus(-D(rec)).mean()
                loss_e.backward()
                opt_e.step()
    return w
