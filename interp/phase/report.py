"""Run-level phase statistics in one place: window, loss bump, induction heads, formation, lag."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from interp.phase.bump import LossBump, loss_bump
from interp.phase.heads import classify_induction_heads, formation_time
from interp.phase.lag import Lag, formation_lag
from interp.phase.window import PhaseWindow, phase_change_window


@dataclass
class PhaseReport:
    """Run-level phase-change statistics; ``to_flat_dict`` gives HDF5-attribute scalars."""

    window: PhaseWindow | None
    bump: LossBump | None
    induction_heads: list[tuple[int, int]]
    formation_tokens: dict[tuple[int, int], float | None] = field(default_factory=dict)
    lags: dict[tuple[int, int], Lag | None] = field(default_factory=dict)

    def to_flat_dict(self) -> dict[str, float | str]:
        """Flat ``phase/...`` scalars: floats (NaN when missing) and the heads as "l.h,l.h"."""
        nan = float("nan")
        w, b = self.window, self.bump
        flat: dict[str, float | str] = {
            "phase/has_window": float(w is not None),
            "phase/window_start_tokens": w.start_tokens if w else nan,
            "phase/window_end_tokens": w.end_tokens if w else nan,
            "phase/window_peak_tokens": w.peak_tokens if w else nan,
            "phase/window_peak_slope": w.peak_slope if w else nan,
            "phase/window_width_log10": w.width_decades if w else nan,
            "phase/window_drop": w.drop if w else nan,
            "phase/window_total_drop": w.total_drop if w else nan,
            "phase/window_share": w.share if w else nan,
            "phase/window_z": w.z if w else nan,
            "phase/window_step_z": w.step_z if w else nan,
            "phase/window_open_end": float(w.open_end) if w else nan,
            "phase/window_noise_sd": w.noise_sd if w else nan,
            "phase/window_noise_rho": w.noise_rho if w else nan,
            "phase/icl_before": w.icl_before if w else nan,
            "phase/icl_after": w.icl_after if w else nan,
            "phase/bump_start_tokens": b.start_tokens if b else nan,
            "phase/bump_end_tokens": b.end_tokens if b else nan,
            "phase/bump_peak_tokens": b.peak_tokens if b else nan,
            "phase/bump_height": b.height if b else nan,
            "phase/induction_heads": ",".join(f"{layer}.{head}" for layer, head in self.induction_heads),
        }
        for layer, head in self.induction_heads:
            name = f"phase/head_{layer}.{head}"
            formed = self.formation_tokens.get((layer, head))
            lag = self.lags.get((layer, head))
            flat[f"{name}_formation_tokens"] = nan if formed is None else float(formed)
            flat[f"{name}_lag_log10"] = lag.lag_log10 if lag else nan
            flat[f"{name}_lag_ratio"] = lag.ratio if lag else nan
            flat[f"{name}_lag_low"] = lag.low if lag else nan
            flat[f"{name}_lag_high"] = lag.high if lag else nan
            flat[f"{name}_lag_resolution"] = lag.resolution_log10 if lag else nan
            flat[f"{name}_lag_resolved"] = float(lag.resolved) if lag else nan
            flat[f"{name}_lag_block"] = float(lag.block) if lag else nan
        return flat


def analyse_phase(tokens_eval: np.ndarray, icl: np.ndarray, train_tokens: np.ndarray,
                  train_loss: np.ndarray, prefix_matching: np.ndarray, copying: np.ndarray,
                  n_boot: int = 1000, seed: int = 0, prefix_threshold: float = 0.4,
                  copying_threshold: float = 0.0) -> PhaseReport:
    """Window, loss bump, induction heads (at the final checkpoint), their formation and lag.

    ``prefix_matching`` and ``copying`` are [C, L, H] over the same checkpoints as ``icl``.
    Formation uses the default half-of-final rule; lags need a window and a formed head.
    """
    window = phase_change_window(tokens_eval, icl)
    bump = loss_bump(train_tokens, train_loss)
    prefix = np.asarray(prefix_matching, dtype=np.float64)
    heads = classify_induction_heads(prefix[-1], np.asarray(copying)[-1], prefix_threshold,
                                     copying_threshold) if len(prefix) else []
    formation, lags = {}, {}
    for layer, head in heads:
        formed = formation_time(tokens_eval, prefix[:, layer, head])
        formation[(layer, head)] = formed
        lags[(layer, head)] = (None if formed is None or window is None else
                               formation_lag(formed, window, tokens_eval, icl, tokens_eval,
                                             prefix[:, layer, head], n_boot, seed))
    return PhaseReport(window, bump, heads, formation, lags)
