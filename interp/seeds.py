"""Across-seed statistics: runs of one config with different seeds, pooled per quantity.

Runs are grouped by their ``config.json`` with the seed taken out (and the fields that only
say where and how a run was executed: :data:`IGNORED_FIELDS`). A run counts once it is
finished and analysed at every checkpoint (its ``phase`` group written); each group's
quantities are read from the ``phase`` attributes of its runs' ``metrics.h5``.

For each quantity with values x_1..x_n from n seeds (one value per seed)::

    mean  = (1/n) sum x_i
    sd    = sqrt( sum (x_i - mean)^2 / (n - 1) )
    90% t interval of the config's mean:  mean +- t_{0.95, n-1} * sd / sqrt(n)
    range of the seeds:                   min x_i .. max x_i

The two say different things. The **t interval** is an interval for the config's mean over
seeds (what another set of seeds would average to), assuming the per-seed values are
roughly normal on the scale they are averaged on; it narrows as seeds are added. The
**range** shows the seed-to-seed spread itself: where a single new seed may land. The interval
is given only from :data:`MIN_SEEDS` values on; with fewer there is a mean (and a range) but
no interval.

Token counts (window start and end, head formation) are averaged in log10 tokens, the scale
on which checkpoints are spaced and phase changes are located, and reported back in tokens:
the mean is the geometric mean, the interval and range are in tokens, and ``sd`` stays in
decades (log10). Window share, the ICL scores before and after, and the lag (already
log10 tokens of head formation minus log10 tokens of the ICL change, in decades) are
averaged as they are.

Window quantities are over the seeds that found a window (``windows`` of ``n`` say how many
did). A window that was still falling at the end of the run (``window_open_end``) has an
end that is only a lower bound; ``open_end`` counts them.

Induction heads are numbered arbitrarily within a run: head 1.2 of seed 0 and head 1.2 of
seed 1 are not the same head in any sense except their index. Per-head statistics are given
(with how many seeds have that head), but the seed-comparable quantity is **the
earliest-forming induction head of each seed**: its formation (tokens) and its lag, one value
per seed that has an induction head with a formation time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float

from interp import store
from interp.config import RunConfig
from interp.errors import InterpError
from interp.runs import list_checkpoints, read_config, run_status

MIN_SEEDS = 3
LEVEL = 0.90
# Fields that do not change what is trained, only where and how: left out of the grouping key.
IGNORED_FIELDS = frozenset({"train.seed", "train.threads", "train.device", "train.analyze",
                            "data.cache_dir"})
ANALYSIS_GROUP = "analysis"  # interp.analysis.GROUP (not imported: it pulls in torch)

# name -> (label, averaged in log10?, unit) for the per-seed scalars of the phase group
QUANTITIES: dict[str, tuple[str, bool, str]] = {
    "window_start_tokens": ("window start", True, "tokens"),
    "window_end_tokens": ("window end", True, "tokens"),
    "window_share": ("share of the ICL change inside", False, "share"),
    "icl_before": ("band ICL before the window", False, "nats"),
    "icl_after": ("band ICL after the window", False, "nats"),
    "earliest_head_formation_tokens": ("earliest induction head forms", True, "tokens"),
    "earliest_head_lag_log10": ("earliest head's lag after the ICL change", False, "decades"),
}
HEAD_QUANTITIES: dict[str, tuple[str, bool, str]] = {
    "formation_tokens": ("forms", True, "tokens"),
    "lag_log10": ("lag", False, "decades"),
}
HEADER = ["quantity", "seeds", "mean", f"{LEVEL:.0%} t interval of the mean", "range of the seeds", "sd"]


# --------------------------------------------------------------------------- statistics

def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with ``df`` (integer >= 1) degrees of freedom.

    Bisection on the exact closed-form CDF for integer df (Abramowitz & Stegun 26.7.3/26.7.4),
    so no scipy: t_quantile(0.95, 2) = 2.919986, t_quantile(0.95, 1) = 6.313752.
    """
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df >= 1, not p={p}, df={df}")
    target = 2 * p - 1  # P(|T| < q)
    high = 1.0
    while _t_central(high, df) < target:
        high *= 2
    low = 0.0
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_central(mid, df) < target else (low, mid)
    return (low + high) / 2


def _t_central(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer ``df``."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    total, term = 0.0, 1.0
    if df % 2:  # odd: (2/pi)(theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ... cos^(df-3)))
        if df == 1:
            return 2 * theta / math.pi
        for k in range((df - 3) // 2 + 1):
            if k:
                term *= c * c * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + s * c * total)
    for k in range((df - 2) // 2 + 1):  # even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ... cos^(df-2))
        if k:
            term *= c * c * (2 * k - 1) / (2 * k)
        total += term
    return s * total


@dataclass(frozen=True)
class Estimate:
    """One quantity across the seeds of one config.

    ``mean``, ``low``/``high`` (the t interval of the config's mean; NaN below MIN_SEEDS
    values) and ``min``/``max`` (the range of the seeds) are in the quantity's own unit; for
    ``log10`` quantities the mean is geometric and ``sd`` is in decades, otherwise ``sd`` is
    in the quantity's unit (NaN for a single value).
    """

    n: int
    mean: float
    sd: float
    low: float
    high: float
    min: float
    max: float
    log10: bool = False

    @property
    def has_interval(self) -> bool:
        return self.n >= MIN_SEEDS

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in self.__dict__.items()}


def across_seeds(values: Float[np.ndarray, " seed"] | Sequence[float], log10: bool = False) -> Estimate | None:
    """n, mean, sd, the 90% t interval of the mean and the range of one value per seed.

    Non-finite values (a seed where the quantity is undefined) are left out; None if none is
    left. With ``log10`` the values are averaged in log10 and reported back (geometric mean).
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x) & ((x > 0) if log10 else True)]
    if not x.size:
        return None
    y = np.log10(x) if log10 else x
    n, mean = int(y.size), float(y.mean())
    sd = float(y.std(ddof=1)) if n > 1 else float("nan")
    half = t_quantile((1 + LEVEL) / 2, n - 1) * sd / math.sqrt(n) if n >= MIN_SEEDS else float("nan")
    back = (lambda v: float(10 ** v)) if log10 else float
    return Estimate(n, back(mean), sd, back(mean - half), back(mean + half), float(x.min()), float(x.max()), log10)


# --------------------------------------------------------------------------- runs and groups

@dataclass(frozen=True)
class SeedRun:
    """One run as the grouping sees it: where, which seed, and its phase attributes."""

    path: Path
    config: RunConfig
    status: str
    analysed: bool                       # finished and analysed at every checkpoint
    phase: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.config.train.seed

    @property
    def used(self) -> bool:
        return self.status == "finished" and self.analysed and bool(self.phase)

    @property
    def has_window(self) -> bool:
        return bool(self.phase.get("has_window"))

    def value(self, name: str) -> float:
        """A phase scalar (NaN when missing); window quantities NaN without a window."""
        if name.startswith("earliest_head_"):
            head = self.earliest_head()
            return float("nan") if head is None else self.value(f"head_{head}_{name.removeprefix('earliest_head_')}")
        if (name.startswith("window_") or name.startswith("icl_")) and not self.has_window:
            return float("nan")
        value = self.phase.get(name)
        try:
            return float(value)
        except (TypeError, ValueError):
            return float("nan")

    def heads(self) -> list[str]:
        """Induction heads as "l.h" strings."""
        return [h for h in str(self.phase.get("induction_heads", "") or "").split(",") if h]

    def earliest_head(self) -> str | None:
        """The induction head with the earliest finite formation time (ties: the first listed)."""
        times = [(self.value(f"head_{h}_formation_tokens"), i, h) for i, h in enumerate(self.heads())]
        times = [t for t in times if math.isfinite(t[0])]
        return min(times)[2] if times else None


def read_seed_run(path: str | Path) -> SeedRun:
    """A run directory's config, status and phase attributes (no torch)."""
    path = Path(path)
    config = read_config(path)
    status = run_status(path)
    phase: dict[str, Any] = {}
    analysed = False
    if (path / store.FILENAME).is_file():
        try:
            raw = store.attrs(path, "phase")
            done = {int(s) for s in store.steps(path, ANALYSIS_GROUP)}
        except store.StoreError:
            raw, done = {}, set()
        phase = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in raw.items()}
        phase = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in phase.items()}
        steps = {c.step for c in list_checkpoints(path)}
        analysed = bool(phase) and bool(steps) and steps <= done
    return SeedRun(path, config, status, analysed, phase)


def config_key(config: RunConfig) -> tuple[tuple[str, Any], ...]:
    """The config as sorted ("section.field", value) pairs, without :data:`IGNORED_FIELDS`."""
    raw = config.to_dict()
    pairs = [(f"{section}.{k}", v) for section in ("model", "data", "train")
             for k, v in raw[section].items() if f"{section}.{k}" not in IGNORED_FIELDS]
    return tuple(sorted((k, repr(v)) for k, v in pairs))


@dataclass
class SeedGroup:
    """The runs of one config (all seeds), and its across-seed estimates.

    ``runs`` are every run of the config; ``used`` those finished and analysed, one per seed.
    ``quantities`` maps the names of :data:`QUANTITIES` to estimates (absent when no seed
    has a value); ``heads`` maps "l.h" to {"formation_tokens", "lag_log10"} estimates, whose
    ``n`` is how many seeds have that head.
    """

    label: str
    key: tuple
    runs: list[SeedRun]
    used: list[SeedRun] = field(default_factory=list)
    windows: int = 0
    open_end: int = 0
    quantities: dict[str, Estimate] = field(default_factory=dict)
    heads: dict[str, dict[str, Estimate]] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.used]

    @property
    def has_interval(self) -> bool:
        """Whether enough seeds finished and were analysed for across-seed intervals."""
        return len(self.used) >= MIN_SEEDS

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "runs": [r.path.name for r in self.runs],
            "seeds": self.seeds, "n": len(self.used), "windows": self.windows, "open_end": self.open_end,
            "level": LEVEL, "quantities": {k: e.to_dict() for k, e in self.quantities.items()},
            "heads": {h: {k: e.to_dict() for k, e in q.items()} for h, q in self.heads.items()},
        }


def group_by_config(runs: Iterable[SeedRun], label: Callable[[RunConfig], str] | None = None) -> list[SeedGroup]:
    """Runs grouped by config minus the seed, in order of first appearance, with estimates.

    A seed that appears twice in one config (two copies of a run) is counted once: the first.
    ``label`` names a group from its config; by default the fields that differ between the
    groups (``n_layers=2``), or, for a single group, its run names without the ``_seed=N`` tail.
    """
    groups: dict[tuple, SeedGroup] = {}
    for run in runs:
        key = config_key(run.config)
        groups.setdefault(key, SeedGroup("", key, [])).runs.append(run)
    differing = _differing_fields([g.key for g in groups.values()])
    for group in groups.values():
        group.label = label(group.runs[0].config) if label else _default_label(group, differing)
        seen: set[int] = set()
        for run in group.runs:
            if run.used and run.seed not in seen:
                seen.add(run.seed)
                group.used.append(run)
        _estimate(group)
    return list(groups.values())


def seed_groups(run_dirs: Iterable[str | Path], label: Callable[[RunConfig], str] | None = None) -> list[SeedGroup]:
    """:func:`group_by_config` over run directories (those without a config.json are skipped)."""
    runs = []
    for path in run_dirs:
        try:
            runs.append(read_seed_run(path))
        except InterpError:
            continue  # not a run (yet): nothing to pool
    return group_by_config(runs, label)


def _estimate(group: SeedGroup) -> None:
    used = group.used
    group.windows = sum(r.has_window for r in used)
    group.open_end = sum(r.has_window and r.value("window_open_end") == 1.0 for r in used)
    for name, (_, log10, _) in QUANTITIES.items():
        estimate = across_seeds([r.value(name) for r in used], log10)
        if estimate is not None:
            group.quantities[name] = estimate
    names = sorted({h for r in used for h in r.heads()}, key=lambda h: tuple(int(x) for x in h.split(".")))
    for head in names:
        having = [r for r in used if head in r.heads()]
        group.heads[head] = {}
        for name, (_, log10, _) in HEAD_QUANTITIES.items():
            estimate = across_seeds([r.value(f"head_{head}_{name}") for r in having], log10)
            if estimate is not None:
                group.heads[head][name] = estimate


def _differing_fields(keys: list[tuple]) -> list[str]:
    if len(keys) < 2:
        return []
    values = [dict(k) for k in keys]
    names = sorted({name for v in values for name in v})
    return [n for n in names if len({v.get(n) for v in values}) > 1]


def _default_label(group: SeedGroup, differing: list[str]) -> str:
    if differing:
        values = dict(group.key)
        return " ".join(f"{name.split('.', 1)[1]}={values.get(name, '-')}" for name in differing)
    stems = {re.sub(r"_?seed=\d+$", "", r.path.name) for r in group.runs}
    if len(stems) == 1 and next(iter(stems)):
        return next(iter(stems))
    return group.runs[0].path.name


# --------------------------------------------------------------------------- text

def fmt_value(value: float, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "tokens":
        return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value:,.0f}"
    if unit == "share":
        return f"{value:.0%}"
    return f"{value + 0.0:+.3f}"  # + 0.0: no "-0.000"


def estimate_row(name: str, estimate: Estimate, unit: str) -> list[str]:
    """One row under :data:`HEADER`: quantity, seeds, mean, t interval, range, sd."""
    f = lambda v: fmt_value(v, unit)  # noqa: E731
    interval = f"{f(estimate.low)} .. {f(estimate.high)}" if estimate.has_interval else "-"
    spread = f"{f(estimate.min)} .. {f(estimate.max)}" if estimate.n > 1 else "-"
    if not math.isfinite(estimate.sd):
        sd = "-"
    elif estimate.log10:
        sd = f"{estimate.sd:.3f} dec"
    else:
        sd = f"{estimate.sd:.0%}" if unit == "share" else f"{estimate.sd:.3f}"
    unit_note = "" if unit in ("tokens", "share") else f" ({unit})"
    return [name + unit_note, str(estimate.n), f(estimate.mean), interval, spread, sd]


def group_rows(group: SeedGroup, per_head: bool = True) -> list[list[str]]:
    """The rows of one group's table (:data:`HEADER`): run quantities, then (``per_head``) two
    rows per induction-head index."""
    rows = [["seeds that found a window", str(len(group.used)), f"{group.windows} of {len(group.used)}"
             + (f" ({group.open_end} still falling at the end)" if group.open_end else ""), "", "", ""]]
    for name, (text, _, unit) in QUANTITIES.items():
        if name in group.quantities:
            rows.append(estimate_row(text, group.quantities[name], unit))
    for head, estimates in group.heads.items() if per_head else ():
        for name, (text, _, unit) in HEAD_QUANTITIES.items():
            if name in estimates:
                rows.append(estimate_row(f"head {head} {text}", estimates[name], unit))
    return rows


def group_heading(group: SeedGroup) -> str:
    """One line: the config's label, seeds used of runs found, and why there is no interval."""
    head = f"{group.label}: {len(group.used)} of {len(group.runs)} seeds finished and analysed"
    if group.used:
        head += f" (seeds {', '.join(str(s) for s in group.seeds)})"
    if not group.has_interval:
        head += f"; no across-seed interval (needs {MIN_SEEDS})"
    return head


NOTE = (f"mean over seeds (geometric for tokens); {LEVEL:.0%} t interval of the config's mean: "
        f"mean +- t(0.95, n-1) sd/sqrt(n); range: the seeds themselves. Window quantities over the seeds "
        f"with a window; heads are numbered arbitrarily per seed, so the earliest-forming induction head "
        f"of each seed is the comparable one")


def heads_line(group: SeedGroup) -> str:
    """How many seeds have each induction-head index, on one line."""
    counts = ", ".join(f"{head} in {next(iter(q.values())).n}" for head, q in group.heads.items() if q)
    return f"induction heads (seeds with each index): {counts or 'none'}"


def markdown_table(groups: Sequence[SeedGroup], per_head: bool = True) -> list[str]:
    """Markdown lines: the note, then per group its heading and a table (groups with fewer than
    MIN_SEEDS analysed seeds get the heading only)."""
    lines = [NOTE[0].upper() + NOTE[1:] + "."]
    for group in groups:
        lines += ["", f"**{group_heading(group)}**"]
        if group.has_interval:
            rows = group_rows(group, per_head)
            lines += ["", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
            lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def text_table(groups: Sequence[SeedGroup], per_head: bool = False) -> list[str]:
    """Plain-text lines for a terminal: a note, then per group its heading and aligned rows;
    per-head rows only with ``per_head`` (else one line of how many seeds have each index)."""
    lines = [f"across seeds: {NOTE}"]
    for group in groups:
        lines.append(group_heading(group))
        if not group.has_interval:
            continue
        rows = [HEADER] + group_rows(group, per_head)
        widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        if not per_head:
            lines.append("  " + heads_line(group))
    return lines
