"""Vega-Lite specs for the workbench's charts, as plain dicts.

The views pass these to ``st.vega_lite_chart(dataframe, spec)``. Plain dicts instead of Altair
objects because Altair validates every channel against the Vega-Lite JSON schema as a chart is
built: on the Training-curves view that, with importing Altair, was about half a second of
the first draw (benchmarks/bench_app.py), for charts this simple.
"""

from __future__ import annotations

from typing import Any

Spec = dict[str, Any]
PAN_ZOOM = [{"name": "view", "select": "interval", "bind": "scales"}]


def _q(field: str, title: str | None = None, log: bool = False, **extra: Any) -> Spec:
    channel: Spec = {"field": field, "type": "quantitative", **extra}
    if title is not None:
        channel["title"] = title
    if log:
        channel["scale"] = {"type": "log"}
    return channel


def _n(field: str, **extra: Any) -> Spec:
    return {"field": field, "type": "nominal", **extra}


def _tooltip(*fields: str) -> list[Spec]:
    return [{"field": f} for f in fields]


def windows_layer(windows: list[dict[str, Any]], log_x: bool = False) -> list[Spec]:
    """Shaded phase-change windows ({run, start, end} in tokens), coloured by run."""
    windows = [w for w in windows if not log_x or w["start"] > 0]
    if not windows:
        return []
    return [{"data": {"values": windows}, "mark": {"type": "rect", "opacity": 0.12},
             "encoding": {"x": _q("start", log=log_x), "x2": {"field": "end"}, "color": _n("run"),
                          "tooltip": _tooltip("run", "start", "end")}}]


def lines(x: str, y: str, colour: str, *, dash: str | None = None, bold: str | None = None,
          log_x: bool = False, x_title: str | None = None, y_title: str | None = None,
          windows: list[dict[str, Any]] | None = None, points: bool = False, height: int = 300) -> Spec:
    """Lines of ``y`` over ``x``, one per ``colour`` (and ``dash``) value, pan/zoom on, windows shaded.

    ``bold``: the ``dash`` value drawn thicker (the band ICL score beside the single-index one).
    """
    encoding: Spec = {"x": _q(x, x_title or x, log=log_x), "y": _q(y, y_title or y), "color": _n(colour),
                      "tooltip": _tooltip(*(f for f in (colour, dash, x, y) if f))}
    if dash:
        encoding["strokeDash"] = _n(dash)
    if bold:
        encoding["strokeWidth"] = {"condition": {"test": f"datum['{dash}'] === '{bold}'", "value": 3},
                                   "value": 1.2}
    line = {"mark": {"type": "line", "point": points}, "encoding": encoding, "params": PAN_ZOOM}
    return {"height": height, "layer": windows_layer(windows or [], log_x) + [line]}


def heatmap(x: str, x2: str, y: str, value: str, *, x_title: str, tooltip: list[str], log_x: bool = False,
            height: int = 320) -> Spec:
    """Rectangles from ``x`` to ``x2`` on rows ``y`` (last row on top), coloured by ``value``."""
    return {"height": height, "mark": "rect", "encoding": {
        "x": {**_q(x, x_title), "scale": {"type": "log" if log_x else "linear", "nice": False,
                                          "zero": False}}, "x2": {"field": x2},
        "y": {"field": y, "type": "ordinal", "sort": "descending", "axis": {"labelOverlap": True}},
        "color": _q(value, scale={"scheme": "viridis"}), "tooltip": _tooltip(*tooltip)}}


def trajectory(x: str, y: str, colour: str, order: str, *, x_title: str, y_title: str,
               tooltip: list[str], height: int = 360) -> Spec:
    """Connected points in the order of ``order`` (the per-token-loss PCA paths)."""
    return {"height": height, "mark": {"type": "line", "point": True}, "params": PAN_ZOOM, "encoding": {
        "x": _q(x, x_title), "y": _q(y, y_title), "color": _n(colour), "order": _q(order),
        "tooltip": _tooltip(*tooltip)}}


def head_grid(value: str, *, diverging: bool, height: int) -> Spec:
    """Layer x head cells coloured by ``value`` with the value written in; a click selects a
    cell (selection parameter ``pick`` with the cell's layer and head)."""
    base = {"x": {"field": "head", "type": "ordinal"}, "y": {"field": "layer", "type": "ordinal"}}
    cells = {"mark": {"type": "rect", "cursor": "pointer"},
             "params": [{"name": "pick", "select": {"type": "point", "fields": ["layer", "head"], "on": "click"}}],
             "encoding": {**base, "color": _q(value, scale={"scheme": "redblue" if diverging else "viridis"}),
                          "tooltip": _tooltip("layer", "head", value)}}
    text = {"mark": {"type": "text", "fontSize": 11},
            "encoding": {**base, "text": {"field": value, "type": "quantitative", "format": ".2f"}}}
    return {"height": height, "layer": [cells, text]}


#: Vega's tableau10, the colours of the earlier heads; the previous-token head is drawn black.
HEAD_COLOURS = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6",
                "#9d755d", "#bab0ac"]


def composition(x: str, y: str, colour: str, *, names: list[str], bold: str | None,
                baseline: dict[str, float] | None, windows: list[dict[str, Any]], y_title: str,
                height: int = 320) -> Spec:
    """Lines of a head's composition with each earlier head (``colour``, values ``names``) over
    log ``x``; the ``bold`` one (the previous-token head) black and thicker; the random baseline
    as a dashed rule at ``baseline["mean"]`` in a grey band from ``baseline["low"]`` to
    ``baseline["high"]``; the windows ({run, start, end}) shaded gold, off the colour scale so
    that the legend holds only the earlier heads."""
    palette = [HEAD_COLOURS[i % len(HEAD_COLOURS)] for i in range(len(names))]
    encoding: Spec = {"x": _q(x, x, log=True), "y": _q(y, y_title),
                      "color": _n(colour, scale={"domain": names, "range": [
                          "black" if n == bold else c for n, c in zip(names, palette)]}),
                      "tooltip": _tooltip(colour, x, y)}
    if bold is not None:
        encoding["strokeWidth"] = {"condition": {"test": f"datum['{colour}'] === '{bold}'", "value": 3.5},
                                   "value": 1.5}
    layers: list[Spec] = []
    windows = [w for w in windows if w["start"] > 0]
    if windows:
        layers.append({"data": {"values": windows}, "mark": {"type": "rect", "color": "gold", "opacity": 0.3},
                       "encoding": {"x": _q("start", x, log=True), "x2": {"field": "end"},
                                    "tooltip": _tooltip("run", "start", "end")}})
    if baseline is not None:
        values = {"data": {"values": [{**baseline, "baseline": "random heads (mean, ±1 sd)"}]}}
        tip = _tooltip("baseline", "mean", "low", "high")
        layers += [{**values, "mark": {"type": "rect", "color": "gray", "opacity": 0.25},
                    "encoding": {"y": _q("low", y_title), "y2": {"field": "high"}, "tooltip": tip}},
                   {**values, "mark": {"type": "rule", "color": "gray", "strokeDash": [6, 4]},
                    "encoding": {"y": _q("mean", y_title), "tooltip": tip}}]
    layers.append({"mark": {"type": "line"}, "encoding": encoding, "params": PAN_ZOOM})
    return {"height": height, "layer": layers}
