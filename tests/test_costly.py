"""Which checkpoints get the costly measures (interp.costly): the rule's three parts, that it
only ever adds steps, and that sparse series line up with the dense ones."""

from __future__ import annotations

import numpy as np
import pytest

from interp import costly

C = 40
STEPS = np.arange(C) * 10
TOKENS = STEPS * 1000.0
FLAT = [np.zeros((C, 2, 2))]


def chosen(**kw):
    args = dict(head_scores=FLAT, window=None, tokens=TOKENS, every=4, finished=False)
    args.update(kw)
    return set(costly.costly_steps(STEPS, args.pop("head_scores"), args.pop("window"), args.pop("tokens"),
                                   args.pop("every"), args.pop("finished"), **args).tolist())


def test_coarse__every_kth_checkpoint_by_index_and_the_last_once_finished():
    # Catches a coarse grid by step value instead of index, or a missing last checkpoint.
    assert chosen() == set(STEPS[::4].tolist())
    assert chosen(finished=True) == set(STEPS[::4].tolist()) | {STEPS[-1]}
    assert chosen(every=1) == set(STEPS.tolist())  # the old dense behaviour


def test_window__every_checkpoint_inside_and_margin_either_side():
    # Catches a window rule that skips checkpoints inside, or drops the margin.
    got = chosen(window=(TOKENS[13], TOKENS[18]))
    assert set(STEPS[11:21].tolist()) <= got
    assert STEPS[10] not in got - set(STEPS[::4].tolist()) and STEPS[21] not in got


def test_change__a_head_that_moves_between_coarse_points_fills_them_in():
    # Catches a change test that ignores the head scores, or fills the wrong interval.
    scores = np.zeros((C, 2, 2))
    scores[22:, 1, 0] = 0.5  # a head forms between coarse points 20 and 24
    got = chosen(head_scores=[scores])
    assert set(STEPS[20:25].tolist()) <= got
    assert not set(STEPS[25:28].tolist()) & got
    small = np.zeros((C, 2, 2))
    small[22:, 1, 0] = costly.CHANGE / 2  # noise-sized moves add nothing
    assert chosen(head_scores=[small]) == chosen()


def test_incremental__more_checkpoints_or_a_window_only_add_steps():
    # The property that keeps a later analysis from dropping measured rows.
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, C))
        early = set(costly.costly_steps(STEPS[:n], [FLAT[0][:n]], None, TOKENS[:n], 4, False).tolist())
        start = int(rng.integers(0, C - 1))
        later = chosen(window=(TOKENS[start], TOKENS[min(C - 1, start + 5)]))
        assert early <= later


def test_aligned__sparse_rows_land_on_their_steps_with_nan_elsewhere():
    # Catches alignment by position instead of by step, and overwriting dense (older) rows.
    rows = {"step": STEPS[:6], "tokens": TOKENS[:6]}
    sparse = {"step": np.array([40, 0]), "ablation_icl_change": np.array([[[4.0]], [[0.5]]]),
              "ablation_per_token_change": np.ones((2, 1, 1, 3))}
    out = costly.aligned(rows, sparse)
    assert out["ablation_icl_change"][0, 0, 0] == 0.5 and out["ablation_icl_change"][4, 0, 0] == 4.0
    assert costly.measured(out["ablation_icl_change"]).tolist() == [True, False, False, False, True, False]
    assert out["ablation_per_token_change"].shape == (6, 1, 1, 3)
    dense = {**rows, "ablation_icl_change": np.zeros((6, 1, 1))}
    assert costly.aligned(dense, sparse) is dense
    assert costly.aligned(rows, {}) is rows


@pytest.mark.parametrize("every", [0, -3])
def test_analysis_config__refuses_a_nonpositive_ablate_every(every):
    from interp.analysis import AnalysisConfig
    from interp.errors import InterpError

    with pytest.raises(InterpError, match="ablate_every"):
        AnalysisConfig(ablate_every=every)
