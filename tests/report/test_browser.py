"""The report in a real browser: Debian's headless chromium, driven by selenium through
chromium-driver, at a phone's width (390 px) and a wide screen (1400 px).

At each width: no horizontal overflow of the page, every in-page link resolves, every finding
that claims figures shows them as loaded ``<img>``s, the checklist is visible. Screenshots go to
``runs/test-artifacts/report-browser/`` (or ``$NNRECIPE_TEST_ARTIFACTS``), the run folder the
test writes, so CI keeps them. Chromium missing is a failure (``scripts/system-deps.sh``
installs it), never a skip: a report nobody looked at is not tested.

The report is rendered from a small real run: the digits demo's data (a subset, with planted
duplicates and leaked validation images, so data findings carry image grids) and a short
training run with a learning rate far too high (so train findings carry plots), plus the
journey check on scripted stage numbers (the later stages take minutes).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nnrecipe.api import run
from nnrecipe.core.context import Context
from nnrecipe.core.results import StageResult
from nnrecipe.core.runner import run_check
from nnrecipe.ensemble.journey import Journey
from nnrecipe.examples import digits
from nnrecipe.report import write_outputs

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTHS = (390, 1400)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--hide-scrollbars", "--disable-dev-shm-usage")


def _artifacts() -> Path:
    root = Path(os.environ.get("NNRECIPE_TEST_ARTIFACTS", "runs/test-artifacts"))
    out = root / "report-browser"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


def _small_run(out: Path) -> Path:
    exp = digits.experiment()
    (Xtr, ytr), (Xva, yva), (Xte, yte) = exp.train, exp.val, exp.test
    Xtr, ytr, Xva, yva = Xtr[:500], ytr[:500], Xva[:160].copy(), yva[:160].copy()
    Xtr, ytr = np.concatenate([Xtr, Xtr[:15]]), np.concatenate([ytr, ytr[:15]])  # duplicates
    Xva[:5], yva[:5] = Xtr[100:105], ytr[100:105]  # leaked into validation
    exp.train, exp.val, exp.test = (Xtr, ytr), (Xva, yva), (Xte[:160], yte[:160])
    exp.optimizer = lambda p: torch.optim.SGD(p, lr=0.5)  # update ratios ~100x too large
    exp.epochs = 3
    res = run(exp, ["data", "train"], write=False, name="digits (browser test)")
    # the journey, on scripted stage numbers: tuning raised validation, test fell within noise
    ctx = Context(exp)
    ctx.state.update({
        "baselines": {"split": "val", "majority": {"accuracy": 0.1, "loss": 2.3},
                      "linear": {"accuracy": 0.95, "loss": 0.2}},
        "train": {"val": {"accuracy": 0.96, "loss": 0.13}, "test": {"accuracy": 0.955}},
        "tune": {"best": {"number": 3, "params": {"lr": 0.003}, "val": {"accuracy": 0.99},
                          "test": {"accuracy": 0.95}}}})
    journey = run_check(ctx, Journey)
    res.stages.append(StageResult("ensemble", checks=[journey], status=journey.status))
    res.extra.update(ctx.state["report_extra"])
    write_outputs(res, out)
    return out


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        f"{CHROMIUM} and {CHROMEDRIVER} are needed for the report's browser test: "
        "run `bash scripts/system-deps.sh` as root (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="nnrecipe-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}", "--window-size=1400,1000"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _set_width(drv: Any, width: int) -> None:
    # chromium's headless window is at least 500 px wide: a phone is emulated
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600})


PROBE = """
const out = {};
out.innerWidth = window.innerWidth;
out.scrollWidth = Math.max(document.documentElement.scrollWidth, document.body.scrollWidth);
out.broken = [...document.querySelectorAll('a[href^="#"]')]
  .map(a => a.getAttribute('href').slice(1)).filter(id => !document.getElementById(id));
out.links = document.querySelectorAll('a[href^="#"]').length;
out.findings = {};
for (const card of document.querySelectorAll('#findings ~ .card[id^="finding-"]')) {
  const imgs = [...card.querySelectorAll('figure img')];
  out.findings[card.id] = {code: card.querySelector('code').textContent,
                           loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
                           shown: imgs.filter(i => i.getBoundingClientRect().width > 0).length};
}
const list = document.querySelector('.checklist');
const r = list.getBoundingClientRect();
out.checklist = {width: r.width, height: r.height, left: r.left, right: r.right,
                 display: getComputedStyle(list).display};
out.chipsOutside = [...list.querySelectorAll('.chip')]
  .filter(c => c.getBoundingClientRect().right > window.innerWidth + 0.5).length;
out.chips = list.querySelectorAll('.chip').length;
return out;
"""


def test_report_in_chromium_at_phone_and_wide_widths(driver: Any) -> None:
    out = _artifacts()
    _small_run(out / "run")
    findings = json.loads((out / "run" / "findings.json").read_text())["findings"]
    with_figures = {f["code"]: len(f["figure_files"]) for f in findings if f["figure_files"]}
    assert len(with_figures) >= 2, "the run must produce findings with figures to test"
    for width in WIDTHS:
        _set_width(driver, width)
        driver.get((out / "run" / "report.html").resolve().as_uri())
        driver.execute_script("return document.readyState")
        p = driver.execute_script(PROBE)
        assert p["innerWidth"] == width
        assert p["scrollWidth"] <= width, f"{width}px: the page is {p['scrollWidth']}px wide"
        assert p["links"] > 20 and not p["broken"], f"{width}px: links to nothing: {p['broken']}"
        cards = {c["code"]: c for c in p["findings"].values()}
        for code, n in with_figures.items():
            assert cards[code]["loaded"] == n and cards[code]["shown"] == n, (
                f"{width}px: {code} claims {n} figures, {cards[code]} loaded/shown")
        cl = p["checklist"]
        assert cl["display"] != "none" and cl["width"] > 0.8 * min(width, 1100) - 40
        assert cl["left"] >= 0 and cl["right"] <= width and cl["height"] > 100
        assert p["chips"] >= 15 and p["chipsOutside"] == 0
        height = driver.execute_script("return document.body.scrollHeight")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": min(int(height), 12000), "deviceScaleFactor": 1,
            "mobile": width < 600})
        driver.save_screenshot(str(out / f"report-{width}px.png"))
        assert (out / f"report-{width}px.png").stat().st_size > 10_000
