"""Across-seed statistics (interp.seeds) on synthetic run folders with known phase attributes."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from conftest import tiny_config, write_phase_run

from interp.seeds import MIN_SEEDS, across_seeds, seed_groups, t_quantile, text_table

NAN = float("nan")
T95_2 = 2.919986  # Student t, 0.95 quantile, 2 degrees of freedom (tables)


def config(seed: int, **train):
    base = tiny_config()
    return replace(base, train=replace(base.train, seed=seed, **train))


def phase(start=None, end=None, share=0.75, before=-0.01, after=-0.4, heads=None, **extra):
    """Phase attributes as analysis writes them; no window when ``start`` is None.
    ``heads``: {"l.h": (formation tokens, lag in decades)}."""
    heads = heads or {}
    window = start is not None
    attrs = {"has_window": float(window), "window_start_tokens": start if window else NAN,
             "window_end_tokens": (end or 2 * start) if window else NAN,
             "window_share": share if window else NAN, "icl_before": before if window else NAN,
             "icl_after": after if window else NAN, "induction_heads": ",".join(heads), **extra}
    for head, (formed, lag) in heads.items():
        attrs[f"head_{head}_formation_tokens"] = formed
        attrs[f"head_{head}_lag_log10"] = lag
    return attrs


def test_t_quantile_matches_the_tables():
    # Catches: a normal quantile (1.645) in place of t, df = n instead of n - 1 (2.353 at
    # df 3), and a two-sided 0.95 quantile (4.303 at df 2) in place of the one-sided 0.95.
    assert t_quantile(0.95, 2) == pytest.approx(T95_2, abs=1e-6)
    assert t_quantile(0.95, 1) == pytest.approx(6.313752, abs=1e-6)
    assert t_quantile(0.95, 3) == pytest.approx(2.353363, abs=1e-6)
    assert t_quantile(0.95, 4) == pytest.approx(2.131847, abs=1e-6)
    assert t_quantile(0.95, 9) == pytest.approx(1.833113, abs=1e-6)
    assert t_quantile(0.975, 5) == pytest.approx(2.570582, abs=1e-6)
    assert t_quantile(0.95, 1000) == pytest.approx(1.646379, abs=1e-5)


def test_three_seeds_give_the_geometric_mean_and_the_t_interval(tmp_path):
    starts, shares = [1e6, 2e6, 4e6], [0.6, 0.7, 0.8]
    dirs = [write_phase_run(tmp_path / f"a_seed={s}", config(s), phase(start, share=share))
            for s, (start, share) in enumerate(zip(starts, shares))]
    [group] = seed_groups(dirs)
    assert group.label == "a" and group.seeds == [0, 1, 2] and group.has_interval
    start = group.quantities["window_start_tokens"]
    # Catches an arithmetic mean of tokens (2.33M) instead of the mean of log10 tokens.
    assert start.n == 3 and start.mean == pytest.approx(2e6, rel=1e-9)
    # Catches ddof=0 (0.246 decades) and sd taken in tokens rather than decades.
    assert start.sd == pytest.approx(math.log10(2), rel=1e-9)
    # Catches a z interval (1.645), a missing sqrt(n), df = n, and an interval built in tokens.
    half = T95_2 * math.log10(2) / math.sqrt(3)
    assert start.low == pytest.approx(2e6 / 10 ** half, rel=1e-6)
    assert start.high == pytest.approx(2e6 * 10 ** half, rel=1e-6)
    # The range is the seeds themselves, not the interval.
    assert (start.min, start.max) == (1e6, 4e6)
    # The window end (here 2 x start) is averaged the same way.
    assert group.quantities["window_end_tokens"].mean == pytest.approx(4e6, rel=1e-9)
    # Shares are averaged as they are: catches a log10 applied to every quantity.
    share = group.quantities["window_share"]
    assert share.mean == pytest.approx(0.7) and share.sd == pytest.approx(0.1)
    assert (share.low, share.high) == pytest.approx((0.7 - T95_2 * 0.1 / math.sqrt(3),
                                                     0.7 + T95_2 * 0.1 / math.sqrt(3)))
    assert group.windows == 3 and group.open_end == 0


def test_a_group_of_two_seeds_gives_no_interval(tmp_path):
    dirs = [write_phase_run(tmp_path / f"a_seed={s}", config(s), phase(start))
            for s, start in enumerate([1e6, 4e6])]
    [group] = seed_groups(dirs)
    # Catches an interval from 2 seeds (t with 1 df: 6.31 sd / sqrt 2, wider than the data
    # and meaningless as a check of the claim).
    assert not group.has_interval and len(group.used) == 2 < MIN_SEEDS
    start = group.quantities["window_start_tokens"]
    assert start.mean == pytest.approx(2e6) and math.isnan(start.low) and math.isnan(start.high)
    assert not start.has_interval
    lines = text_table([group])
    assert "a: 2 of 2 seeds finished and analysed (seeds 0, 1); no across-seed interval (needs 3)" in lines
    assert not any("window start" in line for line in lines)  # no table for it


def test_runs_that_differ_in_a_non_seed_field_are_not_pooled(tmp_path):
    # Negative control. Catches a key that drops more than the seed (or groups by run-name
    # stem): three runs, one with another learning rate, must not make a group of three.
    dirs = [write_phase_run(tmp_path / f"r{s}_seed={s}", config(s, lr=3e-3 if s < 2 else 1e-3), phase(1e6))
            for s in range(3)]
    groups = seed_groups(dirs)
    assert sorted(len(g.used) for g in groups) == [1, 2]
    assert not any(g.has_interval for g in groups)
    # The labels name the field that differs (the runs' name stems differ too).
    assert sorted(g.label for g in groups) == ["lr=0.001", "lr=0.003"]
    # Positive control: fields that say only where and how a run ran (threads) do pool.
    dirs = [write_phase_run(tmp_path / f"b_seed={s}", config(s, threads=s + 1), phase(1e6)) for s in range(3)]
    [group] = seed_groups(dirs)
    assert group.has_interval


def test_the_earliest_forming_head_of_each_seed_is_the_comparable_quantity(tmp_path):
    # Heads are numbered arbitrarily per seed. Seed 0's earliest head is 1.2 (listed second).
    heads = [{"1.0": (4e6, 0.2), "1.2": (1e6, -0.1)}, {"1.0": (2e6, 0.0)}, {"1.1": (4e6, 0.1)}]
    dirs = [write_phase_run(tmp_path / f"a_seed={s}", config(s), phase(1e6, heads=h)) for s, h in enumerate(heads)]
    [group] = seed_groups(dirs)
    formed = group.quantities["earliest_head_formation_tokens"]
    lag = group.quantities["earliest_head_lag_log10"]
    # Catches taking each seed's first listed head (seed 0: 4e6 and +0.2) instead of its earliest.
    assert formed.n == 3 and formed.mean == pytest.approx(2e6, rel=1e-9)
    assert lag.mean == pytest.approx(0.0, abs=1e-12) and lag.sd == pytest.approx(0.1)
    assert lag.high == pytest.approx(T95_2 * 0.1 / math.sqrt(3))
    # Per head: n is how many seeds have that index; no seed shares 1.1 or 1.2, so pooling by
    # index gives no interval for any head. Catches a count of all seeds for every head.
    assert {h: q["formation_tokens"].n for h, q in group.heads.items()} == {"1.0": 2, "1.1": 1, "1.2": 1}
    assert group.heads["1.0"]["formation_tokens"].mean == pytest.approx(math.sqrt(8) * 1e6)
    assert not any(q["lag_log10"].has_interval for q in group.heads.values())


def test_only_finished_and_fully_analysed_seeds_count_and_windows_only_where_found(tmp_path):
    dirs = [write_phase_run(tmp_path / f"a_seed={s}", config(s), phase(start, before=-0.1 * (s + 1)))
            for s, start in enumerate([1e6, 2e6, 4e6])]
    # Seed 3 found no window; its stored ICL numbers must not enter the ICL averages.
    dirs.append(write_phase_run(tmp_path / "a_seed=3", config(3), {**phase(None), "icl_before": 5.0}))
    # Still training, and finished but with one checkpoint not analysed: both left out.
    dirs.append(write_phase_run(tmp_path / "a_seed=4", config(4), phase(1e9), status="training"))
    dirs.append(write_phase_run(tmp_path / "a_seed=5", config(5), phase(1e9), analysed=(10, 20)))
    # Not a run at all (no config.json): skipped.
    (tmp_path / "logs").mkdir()
    [group] = seed_groups(dirs + [tmp_path / "logs"])
    # Catches counting unfinished or partly analysed runs (their 1e9 would move the mean).
    assert group.seeds == [0, 1, 2, 3] and len(group.runs) == 6
    # Catches averaging window quantities over every seed (NaN-propagation or zeros).
    assert group.windows == 3
    assert group.quantities["window_start_tokens"].n == 3
    assert group.quantities["window_start_tokens"].mean == pytest.approx(2e6)
    assert group.quantities["icl_before"].mean == pytest.approx(-0.2)
    row = text_table([group])[3]
    assert row.split()[:8] == ["seeds", "that", "found", "a", "window", "4", "3", "of"], row


def test_a_window_still_falling_at_the_end_is_counted(tmp_path):
    dirs = [write_phase_run(tmp_path / f"a_seed={s}", config(s), phase(1e6, window_open_end=float(s == 1)))
            for s in range(3)]
    [group] = seed_groups(dirs)
    # Catches ignoring the flag (the window end of that seed is only a lower bound).
    assert group.open_end == 1
    assert "3 of 3 (1 still falling at the end)" in "\n".join(text_table([group]))


def test_the_text_table_reads_as_documented(tmp_path):
    heads = [{"1.0": (1.5e6, 0.02)}, {"1.1": (3e6, 0.05), "1.0": (3.2e6, 0.06)}, {"1.3": (6e6, 0.08)}]
    dirs = [write_phase_run(tmp_path / f"n_layers=2_seed={s}", config(s),
                            phase(start, share=share, before=-0.01 * s, after=-0.4 - 0.05 * s, heads=h))
            for s, (start, share, h) in enumerate(zip([1e6, 2e6, 4e6], [0.6, 0.7, 0.8], heads))]
    lines = text_table(seed_groups(dirs), per_head=True)
    text = "\n".join(lines)
    assert lines[1] == "n_layers=2: 3 of 3 seeds finished and analysed (seeds 0, 1, 2)"
    row = next(line for line in lines if line.strip().startswith("window start"))
    assert row.split() == ["window", "start", "3", "2.00M", "0.62M", "..", "6.43M", "1.00M", "..",
                           "4.00M", "0.301", "dec"]
    assert "head 1.0 forms" in text and "earliest head's lag after the ICL change (decades)" in text
    assert across_seeds([]) is None and across_seeds([NAN, 1.0]).n == 1


def test_the_module_needs_no_torch():
    # Catches an import of interp.analysis (which pulls in torch) creeping into interp.seeds:
    # the sweep summary and the app read runs without torch.
    import subprocess
    import sys

    code = "import sys, interp.seeds; sys.exit(int('torch' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
