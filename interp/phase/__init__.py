"""The in-context-learning phase change, read from stored series only (Olsson et al. 2022).

Everything here takes numpy arrays (tokens, ICL score, training loss, per-head scores over
checkpoints) and never a model, so it can be recomputed at no cost whenever a checkpoint is
added. The paper gives no thresholds; the rules below define them, each number a parameter
with its default documented where it is used, and benchmarks/calibrate_phase.py measures the
window rule's false-positive rate and power (docs/PHASE.md).

Conventions: time is x = log10(tokens) (checkpoints at 0 tokens are dropped); slopes are in
nats per decade of tokens; lags are in decades (log10 of a ratio of tokens).

One module per question:
- :mod:`~interp.phase.smoothing`: the local-linear smoother (hat matrices) in log tokens;
- :mod:`~interp.phase.noise`: the jitter-plus-walk noise model and the moving-block bootstrap;
- :mod:`~interp.phase.window`: where the ICL score drops abruptly, with its z;
- :mod:`~interp.phase.edges`: where that drop starts and ends (a broken-stick fit);
- :mod:`~interp.phase.bump`: where the training loss is not convex;
- :mod:`~interp.phase.heads`: which heads are induction heads (prefix matching against its
  null, copying) and when each formed;
- :mod:`~interp.phase.trend`: whether each head has formed, is forming or is fading;
- :mod:`~interp.phase.lag`: the lag between them, with its interval;
- :mod:`~interp.phase.report`: all of it for a run, as flat attributes for metrics.h5;
- :mod:`~interp.phase.synthetic`: the series with known answers that calibrate the rules.
"""

from interp.phase.bump import LossBump, loss_bump, lower_hull
from interp.phase.heads import RULE, InductionRule, classify_induction_heads, formation_time, prefix_evidence
from interp.phase.lag import Lag, formation_lag
from interp.phase.noise import IncrementNoise, NoiseModel, block_bootstrap, increment_noise
from interp.phase.report import PhaseReport, analyse_phase
from interp.phase.smoothing import BANDWIDTH, local_linear, noise_sd
from interp.phase.trend import TREND, HeadTrend, TrendRule, head_trends
from interp.phase.window import MIN_Z, PhaseWindow, phase_change_window

__all__ = [
    "BANDWIDTH", "MIN_Z", "RULE", "TREND", "HeadTrend", "IncrementNoise", "InductionRule", "Lag",
    "LossBump", "NoiseModel", "PhaseReport", "PhaseWindow", "TrendRule", "analyse_phase",
    "block_bootstrap", "classify_induction_heads", "head_trends", "increment_noise", "formation_lag",
    "formation_time", "local_linear", "loss_bump", "lower_hull", "noise_sd", "phase_change_window",
    "prefix_evidence",
]
