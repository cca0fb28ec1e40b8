import math

import pytest
import torch
from torch import nn

from nnrecipe.overfit.advice import (
    clip_advice,
    early_spike,
    is_transformer,
    optimizer_family,
    scaled_lr,
    scaling_rows,
    sweep_spike,
    warmup_verdict,
)


def test_scaling_rules() -> None:
    p = [nn.Parameter(torch.zeros(1))]
    assert optimizer_family(torch.optim.AdamW(p)) == "adaptive"
    assert optimizer_family(torch.optim.SGD(p, lr=0.1, momentum=0.9)) == "sgd"
    assert optimizer_family(torch.optim.LBFGS(p)) == "other"
    assert scaled_lr(0.1, 256, 1024, "sgd") == pytest.approx(0.4)  # linear (Goyal et al.)
    assert scaled_lr(1e-3, 64, 256, "adaptive") == pytest.approx(2e-3)  # square root
    assert scaling_rows(1e-3, 64, "adaptive")[0] == [16, 5e-4]


def test_warmup_rule() -> None:
    assert not warmup_verdict(64, "adaptive", False, 0.1).advised
    assert warmup_verdict(1024, "sgd", False, 0.0).advised
    assert warmup_verdict(64, "adaptive", True, 0.0).advised
    assert not warmup_verdict(64, "sgd", True, 0.0).advised  # attention + SGD: no rule here
    assert warmup_verdict(64, "sgd", False, 0.9).advised
    assert is_transformer(nn.TransformerEncoderLayer(8, 2, 16))
    assert not is_transformer(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))


def test_early_spike_ignores_one_noisy_batch() -> None:
    assert early_spike([1.0, 0.9, 0.8, 0.7, 0.6, 0.5]) == 0.0
    assert early_spike([1.0, 0.9, 2.0, 0.8, 0.7, 0.6, 0.5, 0.5]) < 0.5  # one hard batch
    assert early_spike([1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 1.0, 0.9]) > 1.0  # a real spike
    assert early_spike([1.0, math.nan]) == 0.0


def test_clip_threshold_is_a_high_quantile() -> None:
    norms = [1.0] * 95 + [10.0] * 5
    adv = clip_advice(norms)
    assert adv is not None and 1.0 <= adv.threshold < 10.0
    assert adv.clipped_fraction <= 0.06 and adv.quantiles["max"] == 10.0
    assert clip_advice([1.0] * 5) is None
    assert clip_advice([0.0] * 50 + [1.0]) is None  # loss at ~0: nothing to clip


def test_sweep_spike_counts_only_rates_up_to_the_suggestion() -> None:
    lrs = [10 ** (-7 + i / 10) for i in range(80)]
    calm = [2.0] * 50 + [2.0 - 0.05 * i for i in range(20)] + [5.0] * 10  # diverges at the end
    assert sweep_spike(lrs, calm, up_to=lrs[65]) == 0.0
    bumpy = [2.0] * 20 + [4.0] * 5 + [2.0] * 55  # jumps while the rate is still small
    assert sweep_spike(lrs, bumpy, up_to=lrs[65]) > 0.5
