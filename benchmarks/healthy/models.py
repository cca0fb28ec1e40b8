"""Models of the healthy-training corpus: the architectures people train, at toy size."""

from __future__ import annotations

import torch
from torch import nn


def mlp(d_in: int, d_out: int, hidden: int | list[int] = 64, depth: int = 2, *,
        bn: bool = False, dropout: float = 0.0, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear -> [BatchNorm] -> act -> [Dropout], ``depth`` times, then a linear head."""
    widths = hidden if isinstance(hidden, list) else [hidden] * depth
    layers: list[nn.Module] = []
    d = d_in
    for h in widths:
        layers.append(nn.Linear(d, h))
        if bn:
            layers.append(nn.BatchNorm1d(h))
        layers.append(act())
        if dropout:
            layers.append(nn.Dropout(dropout))
        d = h
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


def dropout_linear_bn(d_in: int, d_out: int, hidden: int = 64, p: float = 0.1) -> nn.Sequential:
    """Dropout(0.1) -> Linear -> BatchNorm -> ReLU: a mild dropout ahead of batch norm, whose
    variance shift is small (the issue's look-alike)."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(p),
                         nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Linear(hidden, d_out))


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks on 8x8 images, with or without batch norm."""

    def __init__(self, classes: int = 10, width: int = 16, bn: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not bn),
                    *([nn.BatchNorm2d(c_out)] if bn else []), nn.ReLU()]

        self.features = nn.Sequential(*block(1, width), *block(width, 2 * width),
                                      nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(2 * width * 16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                                  nn.ReLU(), nn.Conv2d(c, c, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class ResCNN(nn.Module):
    """A stem conv and three residual blocks, global average pooling, a linear head."""

    def __init__(self, classes: int = 10, width: int = 16, blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(*[ResBlock(width) for _ in range(blocks)])
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


class RNNClassifier(nn.Module):
    """Embedding (tokens) or a linear input (continuous), an LSTM/GRU, the last hidden state
    into a linear head."""

    def __init__(self, classes: int, *, vocab: int | None = None, d_in: int = 2,
                 hidden: int = 32, cell: str = "lstm", layers: int = 1) -> None:
        super().__init__()
        self.embed: nn.Module = nn.Embedding(vocab, 16) if vocab else nn.Identity()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(16 if vocab else d_in, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(x))
        return self.head(out[:, -1])


class TinyTransformer(nn.Module):
    """Token embedding + learned positions, a pre-norm encoder of ``layers`` blocks.

    ``causal=True``: a language model, logits (N, T, vocab) under a causal mask.
    ``causal=False``: a sequence classifier, mean-pooled, logits (N, classes).
    """

    def __init__(self, vocab: int, out: int, *, length: int, d: int = 32, heads: int = 4,
                 layers: int = 2, causal: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.causal = causal
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(1, length, d))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        h = self.embed(x) + self.pos[:, :t]
        mask = nn.Transformer.generate_square_subsequent_mask(t) if self.causal else None
        h = self.norm(self.encoder(h, mask=mask, is_causal=self.causal))
        return self.head(h) if self.causal else self.head(h.mean(1))


class FlattenCE(nn.Module):
    """Cross-entropy over (N, T, C) logits and (N, T) targets, the way language models
    compute it (flattened)."""

    def __init__(self) -> None:
        super().__init__()
        self.reduction = "mean"

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                          target.reshape(-1), reduction=self.reduction)
        return out.reshape(target.shape) if self.reduction == "none" else out
