"""Report plots stay legible: a bar chart's title fits its (narrow) figure."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg

from nnrecipe.report.plots import bar_plot


def test_a_long_title_on_a_narrow_bar_chart_stays_inside_the_figure() -> None:
    # the demo's importances chart: 4 bars (a 4.4 in figure) under a 47-character title,
    # which was cut off at both edges
    fig = bar_plot({"dropout": 0.38, "batch_size": 0.34, "lr": 0.17, "weight_decay": 0.11},
                   title="parameter importances (fANOVA, 5 trials: rough)", ylabel="share")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    title = fig.axes[0].title
    box, page = title.get_window_extent(renderer), fig.bbox
    assert box.x0 >= page.x0 and box.x1 <= page.x1, (box, page)
    assert "rough" in title.get_text()
    short = bar_plot({"a": 1.0, "b": 2.0}, title="importances")
    assert short.axes[0].get_title() == "importances"  # short titles are left alone
