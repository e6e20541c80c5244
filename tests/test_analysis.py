"""The analysis pipeline: hand-built ground truth, incremental runs, bad input, any TL model."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch

from interp import checkpoints, cli, store
from interp.analysis import AnalysisConfig, Probes, analysis_series, analyze_checkpoint, analyze_run
from interp.errors import CheckpointError
from interp.measures import circuits, heads
from interp.phase import classify_induction_heads
from interp.train import train
from tests.conftest import tiny_config
from tests.handbuilt import build_induction_model

FAST = AnalysisConfig(icl_examples=16, ablation_examples=8, pca_pairs=64, pattern_examples=8,
                      prefix_sequences=8, precision="fp32")


def test_handbuilt_circuit__the_induction_head_is_found_and_only_it():
    model = build_induction_model(d_vocab=12, n_ctx=24)
    pool = np.arange(1, 12)
    prefix = heads.prefix_matching(model, heads.repeated_token_probe(pool, 24, 0, n_sequences=16))
    copying = circuits.ov_copying_score(model)
    assert prefix[1, 0] > 0.95
    others = [prefix[layer, head] for layer in range(2) for head in range(2) if (layer, head) != (1, 0)]
    assert max(others) < 0.1
    assert copying[1, 0] > 0.9
    assert classify_induction_heads(prefix.numpy(), copying.numpy()) == [(1, 0)]


@pytest.fixture(scope="module")
def analysed_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(), run_dir, progress=False)
    first = analyze_run(run_dir, FAST, progress=False)
    return run_dir, first


def test_analyze_run__measures_every_checkpoint_once(analysed_run):
    run_dir, first = analysed_run
    steps = [c.step for c in checkpoints.list_checkpoints(run_dir)]
    assert first["analyzed"] == steps and not first["skipped"]
    again = analyze_run(run_dir, FAST, progress=False)
    assert again["analyzed"] == []  # incremental: nothing new to do
    rows = analysis_series(run_dir)
    n, layers, heads_ = len(steps), 2, 2
    assert rows["prefix_matching"].shape == (n, layers, heads_)
    assert rows["composition_k"].shape == (n, layers, heads_, layers, heads_)
    assert rows["ablation_icl_change"].shape == (n, layers, heads_)
    assert rows["per_token_loss"].shape == (n, 64)
    assert np.isnan(rows["composition_k"][:, 1, :, 0, :]).all()  # later -> earlier is undefined
    with store.read(run_dir) as handle:
        assert "phase" in handle and "has_window" in handle["phase"].attrs


def test_analyze_run__ablates_the_costly_steps_and_their_rows_equal_a_dense_analysis(analysed_run):
    # Catches: ablating every checkpoint (no saving) or the wrong ones (the rule not applied to
    # the stored series), ablation rows filed under the wrong step, and a sparse ablation row
    # that differs from the dense analysis of the same checkpoint.
    from interp import costly, rundata
    from interp.analysis import build_probes
    from interp.runs import read_config

    run_dir, _ = analysed_run
    rows, phase = analysis_series(run_dir), store.attrs(run_dir, "phase")
    window = (phase["window_start_tokens"], phase["window_end_tokens"]) if phase["has_window"] else None
    wanted = costly.costly_steps(rows["step"], [rows["prefix_matching"], rows["previous_token"]], window,
                                 rows["tokens"], FAST.ablate_every, finished=True)
    stored = np.sort(store.series(run_dir, costly.GROUP)["step"])
    assert stored.tolist() == wanted.tolist() and len(stored) < len(rows["step"])
    assert costly.measured(rows["ablation_icl_change"]).sum() == len(stored)
    config = read_config(run_dir)
    probes = build_probes(rundata.analysis_data(run_dir, config, FAST.icl_examples, FAST.seed),
                          config.model.n_ctx, FAST)
    k = int(np.flatnonzero(rows["step"] == stored[-1])[0])
    model = checkpoints.load_model(checkpoints.list_checkpoints(run_dir)[k].path)
    dense = analyze_checkpoint(model, probes, FAST)
    np.testing.assert_allclose(rows["ablation_icl_change"][k], dense["ablation_icl_change"], atol=1e-6)
    np.testing.assert_allclose(rows["ablation_per_token_change"][k], dense["ablation_per_token_change"], atol=1e-6)


def test_analyze_run__skips_a_corrupt_checkpoint_and_analyses_the_rest(analysed_run, tmp_path):
    run_dir, _ = analysed_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    store_drop = copy / store.FILENAME
    store_drop.unlink()  # nothing analysed yet in the copy
    bad = checkpoints.list_checkpoints(copy)[3]
    (bad.path / "model.safetensors").write_bytes(b"not a checkpoint")
    result = analyze_run(copy, FAST, progress=False)
    assert bad.step in result["skipped"] and "integrity" in result["skipped"][bad.step]
    assert len(result["analyzed"]) == len(checkpoints.list_checkpoints(copy)) - 1


def test_analyze_run__missing_or_empty_run_gives_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        analyze_run(tmp_path / "nope", FAST, progress=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(tiny_config().to_json())
    with pytest.raises(CheckpointError, match="no complete checkpoint yet"):
        analyze_run(tmp_path / "empty", FAST, progress=False)


def test_metrics_of_an_older_layout__are_refused_with_the_fix(tmp_path):
    with h5py.File(tmp_path / store.FILENAME, "w") as handle:
        handle.attrs["layout_version"] = 0
    with pytest.raises(store.StoreError, match="rerun 'interp analyze'"):
        store.series(tmp_path, "analysis")


def test_cli_analyze_and_report__print_the_summary_and_write_figures(analysed_run, tmp_path, capsys):
    run_dir, _ = analysed_run
    assert cli.main(["analyze", str(run_dir), "--no-progress"]) == 0
    assert cli.main(["report", str(run_dir), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "analysis" in printed and "phase" in printed
    assert {p.name for p in tmp_path.glob("*.png")} >= {"tiny_icl_loss.png", "tiny_heads.png",
                                                         "tiny_loss_by_position.png", "pca.png"}
    assert cli.main(["report", str(tmp_path / "nothing")]) == 2


def test_analyze_checkpoint__works_on_a_transformer_bridge():
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_native(dict(n_layers=2, d_model=32, n_heads=2, d_head=16, n_ctx=32,
                                                d_vocab=20, attn_only=True, act_fn="gelu",
                                                normalization_type="LN", seed=0))
    pool = np.arange(1, 20)
    repeated = heads.RepeatedTokens(heads.repeated_random_tokens(pool, 4, 10, 3, bos_token_id=0), 10, 3, 1)
    probes = Probes(heldout=torch.randint(1, 20, (8, 32)), repeated=repeated,
                    pair_examples=torch.zeros(16, dtype=torch.long), pair_positions=torch.arange(1, 17), late=30, early=3)
    row = analyze_checkpoint(bridge, probes, FAST)
    assert row["prefix_matching"].shape == (2, 2) and np.isfinite(row["prefix_matching"]).all()
    assert row["ablation_icl_change"].shape == (2, 2) and np.isfinite(row["icl_score"])


def test_analyze_checkpoint__scores_copying_over_the_probes_copyable_tokens():
    # Catches: analyze_checkpoint not passing probes.copyable to the copying measures (the BOS-
    # suppressing copier then scores -0.72 instead of +1, issue 9 item 1).
    from tests.handbuilt import build_bos_suppressing_copier

    model = build_bos_suppressing_copier(d_vocab=12, n_ctx=24)
    repeated = heads.RepeatedTokens(heads.repeated_random_tokens(np.arange(1, 12), 4, 5, 3, bos_token_id=0), 5, 3, 1)
    probes = Probes(heldout=torch.cat([torch.zeros(8, 1, dtype=torch.long), torch.randint(1, 12, (8, 23))], 1),
                    repeated=repeated, pair_examples=torch.zeros(16, dtype=torch.long),
                    pair_positions=torch.arange(1, 17), late=20, early=3, copyable=torch.arange(1, 12))
    row = analyze_checkpoint(model, probes, FAST)
    assert row["copying_ov"][0, 0] == pytest.approx(1.0, abs=1e-5)
    probes.copyable = None  # every token, as before: the BOS->BOS entry wins
    assert analyze_checkpoint(model, probes, FAST)["copying_ov"][0, 0] < 0


def test_analyze_run__records_the_copyable_set_once_and_redo_drops_it(analysed_run, tmp_path):
    # Catches: the set not recorded, recorded inside the per-checkpoint series (where sorting by
    # step would scramble it), a set that keeps BOS, and --redo leaving a stale set behind.
    from interp.analysis import PROBES_GROUP, drop_analysis, stored_copying_tokens

    run_dir, _ = analysed_run
    with store.read(run_dir) as handle:
        assert "copying_tokens" not in handle["analysis"]
        attrs = dict(handle[PROBES_GROUP].attrs)
    states = tiny_config().data.markov_states  # BOS is id `states`
    assert stored_copying_tokens(run_dir).tolist() == list(range(states))
    assert attrs == {"copying_tokens_rule": "seen_minus_special", "copying_tokens_count": states}
    assert analysis_series(run_dir)["attrs"]["copying_tokens_count"] == states
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    drop_analysis(copy)
    assert stored_copying_tokens(copy) is None


def test_cli_train_with_analyze__analyses_each_checkpoint_as_it_is_written(tmp_path, monkeypatch):
    # Catches: the CLI not handing training its on_checkpoint callback for train.analyze (training
    # itself no longer imports the analysis), or the callback running before the checkpoint is
    # complete or only at the end of the run.
    import interp.analysis as analysis_module
    from interp.analysis import analyzed_steps

    monkeypatch.setattr(analysis_module, "AnalysisConfig", lambda: FAST)  # the tiny sample sizes
    monkeypatch.setattr(analysis_module.analyze_run, "__defaults__", (FAST, True, False))
    real, seen = cli.analyse_each_checkpoint, []

    def watched(run_dir, step):
        real(run_dir, step)
        seen.append(step)
        assert analyzed_steps(run_dir) == {c.step for c in checkpoints.list_checkpoints(run_dir)}

    monkeypatch.setattr(cli, "analyse_each_checkpoint", watched)
    args = ["train", "markov", "model.n_layers=2", "model.d_model=32", "model.n_heads=2", "model.d_head=16",
            "model.n_ctx=32", "markov_states=8", "batch_size=8", "eval_examples=16", "precision=fp32",
            "log_checkpoints=4", "linear_checkpoints=3", "steps=12", "train.analyze=true",
            "--out", str(tmp_path), "--name", "live", "--no-progress"]
    assert cli.main(args) == 0
    run_dir = tmp_path / "live"
    assert seen == [c.step for c in checkpoints.list_checkpoints(run_dir)]
    analysed = sorted(int(s) for s in analysis_series(run_dir)["step"])
    assert analysed == seen


def test_train_without_a_callback__analyses_nothing_and_says_so(tmp_path, caplog):
    # Catches: training importing and running the analysis itself (the old train <-> analysis
    # cycle), or dropping train.analyze silently when no callback was handed to it.
    from interp.analysis import analyzed_steps

    config = tiny_config(train={"analyze": True, "steps": 4})
    with caplog.at_level("WARNING", logger="interp"):
        run_dir = train(config, tmp_path / "plain", progress=False)
    assert analyzed_steps(run_dir) == set()
    assert "no on_checkpoint callback" in caplog.text


def test_analyze_checkpoint__stores_the_prefix_matching_null_beside_the_score():
    # Catches the null measured on the repeated probe (the positional head 1.1 would then have
    # null 1.0 but the induction head 1.0 too, and nothing would pass), the standard errors
    # swapped or left out, and analysis rows without them.
    from tests.handbuilt import add_positional_head

    model = build_induction_model(d_vocab=12, n_ctx=24)
    pool = np.arange(1, 12)
    repeated = heads.repeated_token_probe(pool, 24, 0, n_sequences=8)
    add_positional_head(model, 1, 1, back=repeated.seq_len - 1)
    probes = Probes(heldout=torch.cat([torch.zeros(8, 1, dtype=torch.long), torch.randint(1, 12, (8, 23))], 1),
                    repeated=repeated, pair_examples=torch.zeros(16, dtype=torch.long),
                    pair_positions=torch.arange(1, 17), late=20, early=3,
                    null=heads.unrepeated_token_probe(pool, repeated))
    row = analyze_checkpoint(model, probes, FAST)
    for key in ("prefix_matching_stderr", "prefix_matching_null", "prefix_matching_null_stderr"):
        assert row[key].shape == (2, 2) and np.isfinite(row[key]).all(), key
    assert row["prefix_matching"][1, 0] > 0.95 and row["prefix_matching_null"][1, 0] < 0.3
    assert row["prefix_matching"][1, 1] == pytest.approx(row["prefix_matching_null"][1, 1], abs=1e-5)
    assert row["prefix_matching_null_stderr"][1, 0] > 0 == row["prefix_matching_stderr"][1, 0]
    got = classify_induction_heads(row["prefix_matching"], row["copying_ov"], row["prefix_matching_null"],
                                   row["prefix_matching_stderr"], row["prefix_matching_null_stderr"])
    assert got == [(1, 0)]


def test_analyze_run__stores_the_context_split_and_the_report_prints_it(analysed_run, tmp_path):
    # Catches the split measured on other rows than the band score's (context + position far
    # from the band of the same rows), and the report leaving it out once a window is found.
    from interp.analysis import build_probes
    from interp.measures.icl import context_icl_score, foreign_context, per_token_losses
    from interp.report import window_line
    from interp.rundata import analysis_data
    from interp.runs import read_config

    run_dir, _ = analysed_run
    rows = analysis_series(run_dir)
    assert np.isfinite(rows["icl_context"]).all() and np.isfinite(rows["icl_position"]).all()
    assert (rows["icl_context_stderr"] > 0).all()
    model = checkpoints.load_model(checkpoints.list_checkpoints(run_dir)[-1].path)
    config = read_config(run_dir)
    probes = build_probes(analysis_data(run_dir, config, FAST.icl_examples, FAST.seed), config.model.n_ctx, FAST)
    own = per_token_losses(model, probes.heldout[:FAST.context_examples])
    split = context_icl_score(own, per_token_losses(model, foreign_context(probes.heldout[:own.shape[0]], probes.cut)))
    assert rows["icl_context"][-1] == pytest.approx(split.context, abs=1e-5)
    phase = {"window_start_tokens": 1e5, "window_end_tokens": 2e5, "icl_context_before": -0.01,
             "icl_context_after": -0.2, "icl_position_before": 0.1, "icl_position_after": 0.0}
    assert "far context -0.010 -> -0.200 and the late position +0.100 -> +0.000" in window_line(phase)
    assert "far context" not in window_line({**phase, "icl_context_before": np.nan})


def test_analyze_run__classifies_against_the_null(analysed_run):
    # Catches analyze_run not storing the null series, or update_phase not passing them on
    # (the rule would fall back to the old one).
    run_dir, _ = analysed_run
    rows = analysis_series(run_dir)
    assert rows["prefix_matching_null"].shape == rows["prefix_matching"].shape
    assert np.isfinite(rows["prefix_matching_null_stderr"]).all()
    assert store.attrs(run_dir, "phase")["induction_rule"] == "null"


def test_analysis_rows__a_new_series_is_backfilled_with_nan_for_rows_analysed_before(tmp_path):
    # A run analysed by an interp without the null, then continued and analysed by this one.
    # Catches a ragged group (a series shorter than step), which made analysis_series raise
    # IndexError, and a backfill that pretends the old rows were measured.
    from interp.analysis import GROUP, _backfill

    old = {"step": [10, 20], "tokens": [100, 200], "prefix_matching": np.zeros((2, 2, 2), np.float32)}
    with store.update(tmp_path) as handle:
        store.append(handle, GROUP, old)
    row = {"step": 5, "tokens": 50, "prefix_matching": np.ones((2, 2), np.float32),
           "prefix_matching_null": np.full((2, 2), 0.25, np.float32)}
    with store.update(tmp_path) as handle:
        _backfill(handle, row)
        store.append(handle, GROUP, {k: [v] for k, v in row.items()})
    rows = analysis_series(tmp_path)
    assert rows["step"].tolist() == [5, 10, 20] and rows["prefix_matching_null"].shape == (3, 2, 2)
    assert (rows["prefix_matching_null"][0] == 0.25).all() and np.isnan(rows["prefix_matching_null"][1:]).all()


def test_update_phase__an_analysis_without_the_null_falls_back_to_the_old_rule_and_says_so(analysed_run, tmp_path):
    # A run analysed before the null series existed: update_phase, summarize and text_report must
    # not crash, must classify by the old rule, and must say so. Catches a KeyError on the
    # missing series and a silent fallback.
    from interp.analysis import GROUP, update_phase
    from interp.report import text_report

    run_dir, _ = analysed_run
    copy = tmp_path / "old"
    shutil.copytree(run_dir, copy)
    with store.update(copy) as handle:
        for name in ("prefix_matching_stderr", "prefix_matching_null", "prefix_matching_null_stderr"):
            del handle[GROUP][name]
    flat = update_phase(copy)
    assert flat["phase/induction_rule"] == "legacy"
    text = text_report(copy)
    assert "old rule: prefix matching > 0.4 and OV copying > 0" in text and f"'interp analyze {copy} --redo'" in text


def test_update_phase__without_a_window_stores_the_closest_candidate_and_the_report_shows_it(analysed_run):
    # Catches the miss computed on another series than the window's (the band score), stored
    # beside a window, or left out of the report's phase line.
    from interp.analysis import analysis_series, update_phase
    from interp.measures.icl import icl_band_score
    from interp.phase.window import nearest_miss
    from interp.report import text_report

    run_dir, _ = analysed_run
    flat = update_phase(run_dir)
    rows = analysis_series(run_dir)
    miss = nearest_miss(rows["tokens"], icl_band_score(rows["loss_by_position"]))
    has_window = bool(flat["phase/has_window"])
    assert ("phase/miss_failed" in flat) == (not has_window and miss is not None)
    if "phase/miss_failed" in flat:
        assert flat["phase/miss_start_tokens"] == miss[0].start_tokens and flat["phase/miss_failed"] == "; ".join(miss[1])
        assert "no phase-change window: the closest candidate" in text_report(run_dir)


def test_side_means__leave_out_rows_analysed_before_a_series_existed():
    # Catches a plain mean (NaN as soon as one backfilled row lies on a side) and a missing
    # series raising instead of giving NaN.
    from interp.analysis import _side_means
    from interp.phase.window import PhaseWindow

    window = PhaseWindow(start_tokens=3.0, end_tokens=6.0, peak_tokens=4.0, peak_slope=-1.0, icl_before=0.0,
                         icl_after=-1.0, drop=1.0, total_drop=1.0, share=1.0, width_decades=0.3, z=9.0,
                         step_z=9.0, end_level=-1.0, lowest_before=0.0, n_inside=2, open_end=False,
                         noise_white=0.01, noise_walk=0.01, bandwidth=0.03)
    rows = {"tokens": np.arange(1.0, 10.0), "icl_context": np.array([np.nan, 0.1, 0.3, 9, 9, 9, -1.0, np.nan, -2.0])}
    got = _side_means(rows, "icl_context", "icl_context", window)
    assert got == {"phase/icl_context_before": pytest.approx(0.1), "phase/icl_context_after": pytest.approx(-1.5)}
    missing = _side_means(rows, "icl_position", "icl_position", window)
    assert all(np.isnan(v) for v in missing.values())


def _without_eval_files(run_dir):
    """Strip every checkpoint of ``eval.safetensors`` and its manifest entry (a checkpoint
    written before interp kept the evaluation's losses)."""
    import json

    for checkpoint in checkpoints.list_checkpoints(run_dir):
        (checkpoint.path / checkpoints.EVAL_FILE).unlink()
        manifest = json.loads((checkpoint.path / "manifest.json").read_text())
        del manifest[checkpoints.EVAL_FILE]
        (checkpoint.path / "manifest.json").write_text(json.dumps(manifest))


def test_analyze_run__reuses_trainings_held_out_losses_and_gets_the_same_rows(analysed_run, tmp_path):
    # The tiny run evaluates the 16 held-out rows the analysis measures, at its precision, so
    # every checkpoint's losses come from training. Catches: never reusing them (the count),
    # reusing losses of other rows or a wrong tensor (the rows would differ from a fresh
    # measurement), and an old checkpoint without the file failing to load or analyse.
    run_dir, first = analysed_run
    assert first["shared_losses"] == len(checkpoints.list_checkpoints(run_dir))
    fresh = tmp_path / "fresh"
    shutil.copytree(run_dir, fresh)
    (fresh / store.FILENAME).unlink()
    _without_eval_files(fresh)
    again = analyze_run(fresh, FAST, progress=False)
    assert again["shared_losses"] == 0 and not again["skipped"]
    shared, measured = analysis_series(run_dir), analysis_series(fresh)
    for key in ("icl_score", "icl_score_stderr", "val_loss", "loss_by_position", "per_token_loss",
                "icl_context", "ablation_icl_change"):
        np.testing.assert_allclose(shared[key], measured[key], atol=1e-6, rtol=0, err_msg=key)


def test_shared_losses__only_for_the_same_rows_at_the_same_precision(analysed_run):
    # Catches a reuse keyed on the shape alone (other rows of the same size) and one keyed on
    # the rows but not the precision (bf16 losses where the analysis measures fp32). A file
    # whose bytes differ from the manifest: the next test.
    from dataclasses import replace as dc_replace

    from interp import rundata
    from interp.analysis import build_probes, shared_losses
    from interp.runs import read_config

    run_dir, _ = analysed_run
    config = read_config(run_dir)
    probes = build_probes(rundata.analysis_data(run_dir, config, FAST.icl_examples, FAST.seed),
                          config.model.n_ctx, FAST)
    checkpoint = checkpoints.list_checkpoints(run_dir)[2]
    model = checkpoints.load_model(checkpoint.path)
    assert shared_losses(checkpoint.path, model, probes, FAST) is not None
    other = dc_replace(probes, heldout=probes.heldout.flip(0))
    assert shared_losses(checkpoint.path, model, other, FAST) is None
    assert shared_losses(checkpoint.path, model, probes, dc_replace(FAST, precision="bf16")) is None


def test_checkpoint_manifest__the_eval_file_is_optional_but_checked_when_listed(analysed_run, tmp_path):
    import json

    run_dir, _ = analysed_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    path = checkpoints.list_checkpoints(copy)[1].path
    checkpoints.verify_checkpoint(path)
    data = bytearray((path / checkpoints.EVAL_FILE).read_bytes())
    data[-1] ^= 1
    (path / checkpoints.EVAL_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="eval.safetensors differs"):
        checkpoints.verify_checkpoint(path)
    assert checkpoints.read_evaluation(path) is None
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["notes.txt"] = manifest[checkpoints.EVAL_FILE]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="invalid manifest"):
        checkpoints.verify_checkpoint(path)
