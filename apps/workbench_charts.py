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
