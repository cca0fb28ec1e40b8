"""``channel-order``: images in channels-last layout (N, H, W, C) fed to a ``Conv2d`` that reads
channels first (N, C, H, W).

NumPy, PIL, OpenCV, TensorFlow and most image files give (H, W, C); PyTorch's convolutions
expect (C, H, W). With RGB images of 32x32 the first ``Conv2d(3, ...)`` fails loudly - but a
user who "fixes" that error by setting ``in_channels`` to 32 gets a network that runs and
learns a little: it treats image rows as channels and convolves over (width, colour). The
probe sees the exact tensor that reaches the first convolution (after the user's transforms
and any permute in ``forward``); its last dimension looks like colour channels (1, 3 or 4)
while the "channels" dimension has the size of an image side. When the convolution instead
refused the batch (PyTorch's "expected input[...] to have 3 channels, but got 32"), the
error says the same thing, and the finding names the cause the crash does not.

Channels-last images *reshaped* (or viewed) to (N, C, H, W) instead of permuted have the right
shape but scrambled planes (PaddlePaddle/Paddle#29716: a CIFAR tutorial at 40% instead of
70%). The same probe tensor tells: along the width, a real image plane is smooth (its
autocorrelation decays from lag 1), a reshaped one repeats every C values (it peaks at lag C).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.skeleton.probe import STATE_KEY, get_probe, probe_skip_reason

COLOUR_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA
# By reasoning: an image side is at least 8 pixels (scikit-learn's digits are 8x8), and the
# two sides of an image are within 2x of each other (4:3, 16:9 and square photos; a 5000x1
# "image" is a signal laid out on purpose). A true channels-first tensor of colour images
# never has a last (width) dimension of 1-4.
MIN_SIDE = 8
MAX_ASPECT = 2.0
# Channels-last images *reshaped* (view/reshape, not permute) to (N, C, H, W) have the right
# shape and scrambled planes: each plane runs through the HWC memory, so along its width the
# colours of one pixel alternate and the same colour of the next pixel comes C values later.
# The width autocorrelation of such a batch peaks at lag C (and 2C); a real image plane is
# smooth, its autocorrelation decays from lag 1. By measurement (smooth synthetic photos with
# R/G/B correlated 0.8-0.95, coloured-bar images; 16x16): reshaped, rho_C exceeds both
# neighbours by 0.06-0.45 and rho_C is 0.42-0.81; channels-first, rho_C is 0.10-0.2 *below*
# rho_(C-1). Sampling noise of one rho on a 32-image 16x16 RGB batch: ~0.01 (>= 5x under
# the margin). Natural textures with a period of exactly C pixels averaged over a batch: not
# seen; the second peak at 2C is required too.
RESHAPE_CHANNELS = (3, 4)
PEAK_MARGIN = 0.05
MIN_PEAK = 0.2
_CONV_ERROR = re.compile(r"expected input\[([\d, ]+)\] to have (\d+) channels, but got (\d+) "
                         r"channels")


@dataclass
class ChannelVerdict:
    fires: bool
    shape: tuple[int, ...]


def channel_order_verdict(shape: tuple[int, ...], layer_type: str) -> ChannelVerdict:
    """Pure decision from the shape reaching the first weighted layer and its type."""
    if layer_type != "Conv2d" or len(shape) != 4:
        return ChannelVerdict(False, shape)
    _, c, h, w = shape
    fires = (w in COLOUR_CHANNELS and c >= MIN_SIDE and h >= MIN_SIDE
             and 1 / MAX_ASPECT <= c / h <= MAX_ASPECT)
    return ChannelVerdict(fires, shape)


def width_autocorrelation(x: torch.Tensor, max_lag: int) -> list[float]:
    """Correlation of values ``lag`` apart along the last axis of an (N, C, H, W) batch, for
    lags 1..max_lag, pooled over samples, channels and rows (each channel centred)."""
    z = x.detach().double()
    z = z - z.mean(dim=(0, 2, 3), keepdim=True)
    out = []
    for lag in range(1, max_lag + 1):
        a, b = z[..., :-lag].reshape(-1), z[..., lag:].reshape(-1)
        den = float(a.norm() * b.norm())
        out.append(float((a * b).sum()) / den if den > 0 else 0.0)
    return out


def reshaped_layout_verdict(acf: list[float], channels: int) -> bool:
    """Pure decision: does the width autocorrelation (lags 1..) peak at lag ``channels`` and
    again at 2x it - channels-last memory read as channels-first?"""
    c = channels
    if c not in RESHAPE_CHANNELS or len(acf) < 2 * c:
        return False
    rho = {k + 1: v for k, v in enumerate(acf)}
    peak = rho[c] >= MIN_PEAK and rho[c] - max(rho[c - 1], rho[c + 1]) >= PEAK_MARGIN
    return peak and rho[2 * c] >= rho[2 * c - 1]


def refused_channels_last(error: str) -> tuple[tuple[int, ...], int] | None:
    """From a Conv2d's channel-mismatch error: (the input shape, the channels it expected)
    when the input's last dimension is exactly those channels and its dimension 1 looks like
    an image side - channels-last images into a channels-first convolution."""
    m = _CONV_ERROR.search(error)
    if not m:
        return None
    shape = tuple(int(d) for d in m.group(1).split(","))
    expected = int(m.group(2))
    if len(shape) == 4 and shape[3] == expected and \
            channel_order_verdict(shape, "Conv2d").fires:
        return shape, expected
    return None


class ChannelOrder(Check):
    code = "channel-order"
    stage = "skeleton"
    severity = Severity.WARNING
    title = "Images reach the first convolution channels-first (N, C, H, W)"
    fix = ("Convert images to channels-first before the model: `x.permute(0, 3, 1, 2)` for a "
           "batch, `np.transpose(img, (2, 0, 1))` or torchvision's ToTensor for one image; "
           "then set the first Conv2d's in_channels to the number of colour channels (1 or 3).")
    order = 11

    def applies(self, ctx: Context) -> str | None:
        state = ctx.state.get(STATE_KEY) or {}
        if refused_channels_last(state.get("error", "")):
            return None  # the step crashed on exactly this: say why
        return probe_skip_reason(ctx, self.name)

    def run(self, ctx: Context) -> list[Finding]:
        refused = refused_channels_last((ctx.state.get(STATE_KEY) or {}).get("error", ""))
        if refused:
            shape, expected = refused
            return [self.finding(
                f"the training step crashed because a Conv2d expecting {expected} channels got "
                f"a batch of shape {shape}: its last dimension ({shape[3]}) is the {expected} "
                f"colour channels and dimension 1 ({shape[1]}) an image side, i.e. channels-last "
                "(N, H, W, C) images for a channels-first (N, C, H, W) convolution",
                {"shape": list(shape), "expected_channels": expected, "crashed": True},
                severity=Severity.ERROR)]
        probe = get_probe(ctx, self.name)["a"]
        if probe.first_layer is None or not probe.first_layer_inputs:
            ctx.record("skipped", "no weighted layer received a tensor")
            return []
        name, kind = probe.first_layer
        shape = tuple(int(d) for d in probe.first_layer_inputs[0].shape)
        v = channel_order_verdict(shape, kind)
        ctx.record("first_layer", [name, kind])
        ctx.record("shape_at_first_layer", list(shape))
        if not v.fires:
            return self._reshaped(ctx, name, kind, probe.first_layer_inputs)
        _, c, h, w = shape
        return [self.finding(
            f"the first convolution `{name}` receives {tuple(shape)} and reads dimension 1 "
            f"({c}) as channels, but it has the size of an image side (next to {h}) while the "
            f"last dimension ({w}) has the size of colour channels: these look like "
            "channels-last (N, H, W, C) images, so the network convolves over width and colour "
            "and treats image rows as channels",
            {"layer": name, "shape": list(shape), "in_channels": c,
             "looks_like": [shape[0], w, c, h]})]

    def _reshaped(self, ctx: Context, name: str, kind: str, inputs: list[torch.Tensor]
                  ) -> list[Finding]:
        """Right shape, scrambled planes: channels-last images reshaped, not permuted."""
        x = inputs[0]
        if kind != "Conv2d" or x.ndim != 4 or not x.is_floating_point() \
                or x.shape[1] not in RESHAPE_CHANNELS:
            return []
        c, w = int(x.shape[1]), int(x.shape[3])
        if w < 2 * c + 2:
            return []
        same = [t for t in inputs if t.shape[1:] == x.shape[1:] and t.is_floating_point()]
        acf = width_autocorrelation(torch.cat(same), 2 * c + 1)
        ctx.record("width_autocorrelation", [round(r, 4) for r in acf])
        if not reshaped_layout_verdict(acf, c):
            return []
        lags = ", ".join(f"{r:.2f}" for r in acf)
        return [self.finding(
            f"the first convolution `{name}` receives {tuple(x.shape)}, but its planes are not "
            f"images: along the width the values correlate most with the one {c} places away "
            f"(autocorrelation at lags 1..{2 * c + 1}: {lags}; a real image plane decays from "
            f"lag 1). That is channels-last (H, W, {c}) memory read as ({c}, H, W): the "
            "images were reshaped or viewed instead of permuted, so each 'channel' interleaves "
            "the colours of neighbouring pixels",
            {"layer": name, "shape": list(x.shape), "width_autocorrelation": acf,
             "reshaped": True},
            fix=("Reorder the axes instead of reshaping: `x.permute(0, 3, 1, 2)` for an "
                 "(N, H, W, C) batch (`np.transpose(img, (2, 0, 1))` for one image); view and "
                 "reshape keep the memory order and scramble the pixels."))]
