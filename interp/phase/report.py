"""Run-level phase statistics in one place: window, loss bump, induction heads, their trend
labels, formation, lag."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from interp.phase.bump import LossBump, loss_bump
from interp.phase.heads import LEGACY, NULL_RULE, RULE, InductionRule, formation_time
from interp.phase.lag import Lag, formation_lag
from interp.phase.trend import TREND, HeadTrend, TrendRule, head_trends
from interp.phase.window import PhaseWindow, phase_change_window


@dataclass
class PhaseReport:
    """Run-level phase-change statistics; ``to_flat_dict`` gives HDF5-attribute scalars."""

    window: PhaseWindow | None
    bump: LossBump | None
    induction_heads: list[tuple[int, int]]
    formation_tokens: dict[tuple[int, int], float | None] = field(default_factory=dict)
    lags: dict[tuple[int, int], Lag | None] = field(default_factory=dict)
    trends: dict[tuple[int, int], HeadTrend] = field(default_factory=dict)  # every head
    rule: str = NULL_RULE  # or LEGACY: the analysis has no null series

    @property
    def labelled(self) -> list[tuple[int, int]]:
        """Heads with a trend label (formed, forming, fading), sorted."""
        return sorted(h for h, t in self.trends.items() if t.label)

    def to_flat_dict(self) -> dict[str, float | str]:
        """Flat ``phase/...`` scalars: floats (NaN when missing) and the heads as "l.h,l.h"."""
        w, b = self.window, self.bump
        flat: dict[str, float | str] = {"phase/has_window": float(w is not None)}
        flat.update({f"phase/{key}": _scalar(w, attr) for key, attr in WINDOW_ATTRS.items()})
        flat.update({f"phase/bump_{key}": _scalar(b, key) for key in BUMP_ATTRS})
        flat["phase/induction_heads"] = ",".join(f"{layer}.{head}" for layer, head in self.induction_heads)
        flat["phase/induction_rule"] = self.rule
        flat["phase/head_labels"] = ",".join(f"{l}.{h}:{self.trends[(l, h)].label}" for l, h in self.labelled)
        for layer, head in self.labelled:
            trend = self.trends[(layer, head)]
            flat[f"phase/head_{layer}.{head}_label"] = trend.label
            flat.update({f"phase/head_{layer}.{head}_{key}": float(getattr(trend, attr))
                         for key, attr in TREND_ATTRS.items()})
        for layer, head in self.induction_heads:
            name = f"phase/head_{layer}.{head}"
            formed = self.formation_tokens.get((layer, head))
            lag = self.lags.get((layer, head))
            flat[f"{name}_formation_tokens"] = float("nan") if formed is None else float(formed)
            flat.update({f"{name}_lag_{key}": _scalar(lag, attr) for key, attr in LAG_ATTRS.items()})
        return flat


# metrics.h5 attribute (after "phase/") -> PhaseWindow field; likewise for the bump and each lag.
WINDOW_ATTRS = {
    "window_start_tokens": "start_tokens", "window_end_tokens": "end_tokens",
    "window_peak_tokens": "peak_tokens", "window_peak_slope": "peak_slope",
    "window_width_log10": "width_decades", "window_drop": "drop", "window_total_drop": "total_drop",
    "window_share": "share", "window_z": "z", "window_step_z": "step_z",
    "window_open_end": "open_end", "window_noise_white": "noise_white", "window_noise_walk": "noise_walk",
    "window_bandwidth": "bandwidth", "window_break_start_tokens": "break_start_tokens",
    "window_break_end_tokens": "break_end_tokens",
    "icl_before": "icl_before", "icl_after": "icl_after",
}
BUMP_ATTRS = ("start_tokens", "end_tokens", "peak_tokens", "height")
# Per labelled head: metrics.h5 attribute suffix -> HeadTrend field (besides ``_label``).
TREND_ATTRS = {"prefix": "prefix", "null": "null", "effect": "effect", "z": "z", "copying": "copying",
               "slope": "slope", "slope_z": "slope_z", "steepest": "steepest", "tail": "tail",
               "passes": "passes", "peak_effect": "peak_effect", "peak_tokens": "peak_tokens"}
LAG_ATTRS = {"log10": "lag_log10", "ratio": "ratio", "low": "low", "high": "high",
             "resolution": "resolution_log10", "resolved": "resolved", "block": "block"}


def describe_head(phase: dict[str, Any], name: str) -> str:
    """One labelled head ("l.h") as text, from the ``phase`` attributes (without the ``phase/``
    prefix): its label, prefix matching against the null with effect and z, OV copying, and
    the slope of the effect over the tail with its z and the head's steepest slope; a fading
    head's peak. For the report, the summary and the app alike."""
    def get(key: str) -> float:
        try:
            return float(phase.get(f"head_{name}_{key}", np.nan))
        except (TypeError, ValueError):
            return float("nan")

    label = _text(phase.get(f"head_{name}_label", "")) or "unlabelled"
    passes = get("passes") == 1.0
    status = "" if passes else {"forming": " (not passing yet)", "fading": " (no longer passes)"}.get(label, "")
    if np.isfinite(get("null")):
        evidence = (f"prefix matching {get('prefix'):.2f} vs null {get('null'):.2f} "
                    f"(effect {get('effect'):+.2f}, z {get('z'):.1f})")
    else:
        evidence = f"prefix matching {get('prefix'):.2f} (no null measured)"
    tail = f"{get('tail'):.0f}" if np.isfinite(get("tail")) else "?"
    text = (f"head {name:<5} {label}{status}: {evidence}, OV copying {get('copying'):+.2f}; last {tail} "
            f"checkpoints {get('slope'):+.2f} per decade (z {get('slope_z'):.1f}; steepest {get('steepest'):+.2f})")
    if label == "fading":
        text += f"; peak {get('peak_effect'):+.2f} at {get('peak_tokens') / 1e6:.2f}M tokens"
    return text


def labelled_heads(phase: dict[str, Any]) -> list[tuple[str, str]]:
    """[("l.h", label)] from ``head_labels`` ("1.1:formed,1.2:forming"); [] when absent."""
    return [tuple(item.split(":", 1)) for item in _text(phase.get("head_labels", "")).split(",") if ":" in item]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _scalar(source, attr: str) -> float:
    """float(source.attr) (bools become 0/1), or NaN when there is no source."""
    return float("nan") if source is None else float(getattr(source, attr))


def analyse_phase(tokens_eval: np.ndarray, icl: np.ndarray, train_tokens: np.ndarray,
                  train_loss: np.ndarray, prefix_matching: np.ndarray, copying: np.ndarray,
                  n_boot: int = 1000, seed: int = 0, rule: InductionRule = RULE,
                  trend: TrendRule = TREND, null: np.ndarray | None = None,
                  prefix_stderr: np.ndarray | None = None, null_stderr: np.ndarray | None = None
                  ) -> PhaseReport:
    """Window, loss bump, induction heads (at the final checkpoint), trend labels, formation, lag.

    ``prefix_matching``, ``copying`` and, when measured, ``null``, ``prefix_stderr`` and
    ``null_stderr`` are [C, L, H] over the same checkpoints as ``icl``. Without all three of
    the latter (or with a NaN in any: checkpoints analysed before the null existed) the heads
    are classified by the old rule (``rule.legacy_prefix``) and the report's ``rule`` says so.
    The induction heads are those that pass the rule at the last checkpoint
    (:mod:`interp.phase.heads`); every head also gets a trend label (:mod:`interp.phase.trend`).
    Formation uses the default half-of-final rule; lags need a window and a formed head.
    """
    window = phase_change_window(tokens_eval, icl)
    bump = loss_bump(train_tokens, train_loss)
    prefix = np.asarray(prefix_matching, dtype=np.float64)
    extra = [null, prefix_stderr, null_stderr]
    measured = all(a is not None and np.size(a) == prefix.size and np.isfinite(a).all() for a in extra)
    trends = head_trends(tokens_eval, prefix, copying, *(extra if measured else [None] * 3), rule=rule, trend=trend)
    heads = sorted(h for h, t in trends.items() if t.passes) if len(prefix) else []
    formation, lags = {}, {}
    for layer, head in heads:
        formed = formation_time(tokens_eval, prefix[:, layer, head])
        formation[(layer, head)] = formed
        lags[(layer, head)] = (None if formed is None or window is None else
                               formation_lag(formed, window, tokens_eval, icl, tokens_eval,
                                             prefix[:, layer, head], n_boot, seed))
    return PhaseReport(window, bump, heads, formation, lags, trends, NULL_RULE if measured else LEGACY)
