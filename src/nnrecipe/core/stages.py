"""The recipe's stages, in the order the recipe walks them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageInfo:
    name: str
    step: str  # the recipe step, as Karpathy names it
    summary: str


STAGES: tuple[StageInfo, ...] = (
    StageInfo("data", "Become one with the data",
              "duplicates, leakage, corrupt samples, imbalance, label noise, outliers, scale, shift"),
    StageInfo("skeleton", "Set up the end-to-end skeleton and get dumb baselines",
              "seed, determinism, init loss, input-independent baseline, overfit one batch, "
              "dependencies, what reaches model(x), loss misuse, training-step faults"),
    StageInfo("overfit", "Overfit",
              "learning-rate range test, capacity, the safe optimizer default"),
    StageInfo("train", "Watch training",
              "per-layer gradients, activations, update ratios, learning-curve diagnosis, early stopping"),
    StageInfo("regularize", "Regularize",
              "more data, weight decay, dropout, smaller model/input/batch, first-layer filters"),
    StageInfo("tune", "Tune", "random and Bayesian search with pruning"),
    StageInfo("ensemble", "Squeeze out the juice", "an ensemble of up to 5 of the best models"),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
ANY_STAGE = "any"


def stage_info(name: str) -> StageInfo:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(name)


def in_recipe_order(names: list[str] | tuple[str, ...]) -> list[str]:
    unknown = [n for n in names if n not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; valid stages are {list(STAGE_NAMES)}")
    return [n for n in STAGE_NAMES if n in names]
