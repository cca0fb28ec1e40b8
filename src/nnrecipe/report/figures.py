"""Which figure belongs to which finding, and the file each figure is written to.

A check's figures are shown with the findings that claim them: a finding whose ``figures``
lists titles claims those figures of its check; a finding that lists none claims all of them
(the check drew them for it). Figures no finding claims stay with the check in the stage
section. The check a finding belongs to is the one whose result holds it (``watch()`` reports
group their findings under "training", "gradients", "activations", whatever ``f.check`` says).

``plots/`` file names and ``findings.json``'s ``figure_files`` both come from here, so the
report, the folder and the JSON agree.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from nnrecipe.core.findings import Finding
from nnrecipe.core.results import CheckResult, FigureArtifact, RunResult

PLOTS_DIR = "plots"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "figure"


def figure_filename(stage: str, check: str, index: int, title: str) -> str:
    """``{stage}-{check}-{i}-{slug of the title}.png`` (inside ``plots/``)."""
    return f"{stage}-{check}-{index}-{_slug(title)}.png"


def claimed_figures(check: CheckResult, finding: Finding) -> list[int]:
    """Indices of ``check.figures`` that ``finding`` (one of ``check.findings``) claims."""
    if not check.figures:
        return []
    if finding.figures:
        wanted = set(finding.figures)
        return [i for i, fig in enumerate(check.figures) if fig.title in wanted]
    return list(range(len(check.figures)))


def unclaimed_figures(check: CheckResult) -> list[int]:
    taken = {i for f in check.findings for i in claimed_figures(check, f)}
    return [i for i in range(len(check.figures)) if i not in taken]


def assign_figure_files(result: RunResult) -> None:
    """Set each finding's ``figure_files`` (``plots/...png``) from the figures it claims."""
    for stage in result.stages:
        for check in stage.checks:
            for f in check.findings:
                f.figure_files = [
                    f"{PLOTS_DIR}/{figure_filename(stage.name, check.name, i, check.figures[i].title)}"
                    for i in claimed_figures(check, f)]


def plot_files(result: RunResult) -> dict[str, bytes]:
    """Every figure of the run by its file name in ``plots/`` (full-quality PNGs)."""
    return {figure_filename(stage.name, check.name, i, fig.title): fig.png
            for stage in result.stages for check in stage.checks
            for i, fig in enumerate(check.figures)}


@dataclass(frozen=True)
class EmbeddedFigure:
    title: str
    caption: str
    file: str  # plots/...png
    data_uri: str
    anchor: str


def compact_png(png: bytes) -> bytes:
    """The PNG with an adaptive 256-colour palette, for embedding: matplotlib's RGBA plots
    shrink ~2-3x with no visible change (flat colours, anti-aliased lines); the original
    stays in ``plots/``. Returned unchanged when that is not smaller or Pillow fails."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(png)) as im:
            rgb = im.convert("RGB")
        small = rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        buf = io.BytesIO()
        small.save(buf, format="PNG", optimize=True)
        out = buf.getvalue()
    except Exception:  # noqa: BLE001 - embedding the original is always correct
        return png
    return out if len(out) < len(png) else png


def embed(fig: FigureArtifact, file: str, anchor: str) -> EmbeddedFigure:
    import base64

    uri = "data:image/png;base64," + base64.b64encode(compact_png(fig.png)).decode("ascii")
    return EmbeddedFigure(fig.title, fig.caption, file, uri, anchor)
