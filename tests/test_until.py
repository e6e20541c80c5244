"""train.until=phase: the completeness rule, the stretches past train.steps, exact resume of a
run that went on, the summary's line on a run that ended mid-change and its command."""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from interp import checkpoints, cli, store, train as training, until
from interp.config import RunConfig, build_config
from interp.measures.icl import icl_band_score
from interp.phase.complete import AFTER_CHECKPOINTS, Completion, HeadMovement, assess, heads_in_scope
from interp.phase.trend import Movement, head_trends
from interp.phase.window import phase_change_window
from tests.conftest import tiny_config

# --------------------------------------------------------------------------- the rule on known series

# A run's checkpoint tokens (log-spaced, then evenly spaced) and small white noise, as in
# tests/test_phase_window.py.
TOKENS = np.unique(np.round(np.r_[np.geomspace(4e4, 8e6, 30), np.linspace(4e4, 8e6, 40)]))
X = np.log10(TOKENS)
RNG = np.random.default_rng(0)
NOISE = 0.01 * RNG.standard_normal(X.size)


def sigmoid(centre: float, scale: float = 0.05) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip((X - math.log10(centre)) / scale, -50, 50)))


def heads(*layer1: np.ndarray) -> np.ndarray:
    """[C, 2, len(layer1)] prefix matching: layer 0 flat at 0.05, layer 1 the given series."""
    out = np.full((X.size, 2, len(layer1)), 0.05) + 0.005 * RNG.standard_normal((X.size, 2, len(layer1)))
    for head, series in enumerate(layer1):
        out[:, 1, head] = series
    return out


FORMED = 0.7 * sigmoid(1e6) + 0.05 + 0.01 * RNG.standard_normal(X.size)  # rises with the drop, then flat
EARLY_DROP = -0.4 * sigmoid(1e6) + NOISE
LATE_DROP = -0.5 * sigmoid(8e6, 0.03) + NOISE  # still falling at the last checkpoint


def test_closed_window_and_level_heads__complete():
    verdict = assess(TOKENS, EARLY_DROP, heads(FORMED, 0.05 + 0.01 * RNG.standard_normal(X.size)))
    assert verdict.window is not None and not verdict.window.open_end
    assert verdict.checkpoints_after >= AFTER_CHECKPOINTS and verdict.closed
    assert verdict.complete and not verdict.mid_change
    assert verdict.describe().startswith("ICL drop complete") and "heads level" in verdict.describe()


def test_open_end__not_complete_and_said_so():
    # Catches: a window that is still falling at the end taken as closed (open_end ignored).
    verdict = assess(TOKENS, LATE_DROP, heads(FORMED))
    assert verdict.window is not None and verdict.window.open_end
    assert not verdict.closed and not verdict.complete and verdict.mid_change
    assert verdict.describe().startswith("ICL still falling at the end")


def test_window_closed_only_just__not_complete():
    # Catches: "closed" without the checkpoints after the end (AFTER_CHECKPOINTS); the window's
    # end is moved to 3 checkpoints before the last.
    window = phase_change_window(TOKENS, EARLY_DROP)
    late = replace(window, end_tokens=float(TOKENS[-4]))
    verdict = assess(TOKENS, EARLY_DROP, heads(FORMED), window=late)
    assert verdict.checkpoints_after == 3 and not verdict.closed and not verdict.complete
    assert "only 3 checkpoint(s) before the end" in verdict.describe()


def test_rising_head__not_complete_and_named():
    # Catches: heads ignored, or only the strongest head looked at (the rising one is weaker).
    rising = 0.05 + 0.35 * (TOKENS / TOKENS[-1]) ** 4  # +0.1 over the last 8 checkpoints or so
    verdict = assess(TOKENS, EARLY_DROP, heads(FORMED, rising))
    assert verdict.closed and not verdict.complete and verdict.mid_change
    assert [h.name for h in verdict.rising] == ["1.1"] and not verdict.falling
    assert "ICL drop complete" in verdict.describe() and "heads still rising (1.1 +1." in verdict.describe()


def test_falling_head__not_complete():
    fading = FORMED - 0.3 * (TOKENS / TOKENS[-1]) ** 4
    verdict = assess(TOKENS, EARLY_DROP, heads(fading))
    assert [h.name for h in verdict.falling] == ["1.0"] and not verdict.complete
    assert "heads still falling" in verdict.describe()


def test_layer_0_heads__not_in_scope_of_a_two_layer_model():
    # Catches: a layer-0 head's score blocking the stop; its prefix matching is not an induction
    # score (no earlier layer to compose with). In a one-layer model layer 0 is in scope.
    prefix = heads(FORMED)
    prefix[:, 0, 0] = 0.05 + 0.35 * (TOKENS / TOKENS[-1]) ** 4
    assert assess(TOKENS, EARLY_DROP, prefix).complete
    assert list(heads_in_scope(2)) == [1] and list(heads_in_scope(1)) == [0]
    one_layer = assess(TOKENS, EARLY_DROP, prefix[:, :1])
    assert not one_layer.complete and [h.name for h in one_layer.rising] == ["0.0"]


def test_layer_0_heads__in_scope_with_smeared_keys():
    # Catches: the smeared flag ignored (layer 0 left out), or it taking layer 1 out. A smeared
    # key carries the previous token itself, so a layer-0 head can be the induction head (the
    # man pages of docs/PRESETS.md); a layer-0 head still rising keeps the run going.
    prefix = heads(FORMED)
    prefix[:, 0, 0] = 0.05 + 0.35 * (TOKENS / TOKENS[-1]) ** 4
    assert list(heads_in_scope(2, smeared_key=True)) == [0, 1]
    assert list(heads_in_scope(1, smeared_key=True)) == [0]
    verdict = assess(TOKENS, EARLY_DROP, prefix, smeared_key=True)
    assert not verdict.complete and [h.name for h in verdict.rising] == ["0.0"]
    flat = heads(np.full(X.size, 0.03))
    flat[:, 0, 0] = FORMED  # only the layer-0 head rose: complete with smeared keys, not without
    assert assess(TOKENS, EARLY_DROP, flat, smeared_key=True).complete
    assert not assess(TOKENS, EARLY_DROP, flat).complete


def test_no_window__not_complete_but_not_mid_change():
    verdict = assess(TOKENS, NOISE, heads(np.full(X.size, 0.05) + 0.005 * RNG.standard_normal(X.size)))
    assert verdict.window is None and not verdict.complete and not verdict.mid_change
    assert verdict.describe() == "no abrupt ICL drop yet; heads level"


def test_level_heads__the_same_test_as_the_trend_labels():
    # Catches: the stop rule and the report disagreeing about a head (the default run once
    # ended "heads still falling (1.2 -0.05)" while its report labelled 1.2 "formed"). A head
    # that formed and then sharpens slowly, or settles by a few hundredths, is level for both;
    # a head the labels call forming is rising here.
    sharpening = FORMED + 0.04 * (X - X[0]) / (X[-1] - X[0])
    settling = FORMED - 0.05 * np.clip((TOKENS - 6e6) / 2e6, 0, 1)
    rising = 0.05 + 0.35 * (TOKENS / TOKENS[-1]) ** 4
    prefix = heads(sharpening, settling, rising)
    verdict = assess(TOKENS, EARLY_DROP, prefix)
    labels = head_trends(TOKENS, prefix, np.ones_like(prefix))
    assert [h.level for h in verdict.heads] == [True, True, False]
    assert [labels[(1, h)].label for h in range(3)] == ["formed", "formed", "forming"]
    assert verdict.last_checkpoints == labels[(1, 0)].tail


# --------------------------------------------------------------------------- stretches past train.steps

def test_schedule_up_to_train_steps__does_not_depend_on_the_end():
    # Catches: the nominal checkpoints moving when a run goes on (resume would then miss them).
    config = build_config("default", None, ["train.until=phase"])
    nominal = checkpoints.checkpoint_schedule(config.train)
    for end in (2000, 2520, 8000):
        assert checkpoints.checkpoint_schedule(config.train, end)[:len(nominal)] == nominal


def test_stretches__same_even_spacing_a_quarter_of_the_checkpoints_each_up_to_the_cap():
    # Default preset: 2000 steps, 50 even checkpoints (every 40 steps), so stretches of
    # ceil(50 / 4) = 13 checkpoints = 520 steps, capped at 4 x 2000 by default.
    config = build_config("default", None, ["train.until=phase"])
    ends, end = [], config.train.steps
    while (end := checkpoints.next_end(config, end)) is not None:
        ends.append(end)
    assert ends == [2520, 3040, 3560, 4080, 4600, 5120, 5640, 6160, 6680, 7200, 7720, 8000]
    schedule = checkpoints.checkpoint_schedule(config.train, 3040)
    assert [s for s in schedule if s > 2000] == list(range(2040, 3041, 40))
    capped = build_config("default", None, ["train.until=phase", f"train.max_tokens={2100 * 16 * 256 + 5}"])
    assert checkpoints.next_end(capped, 2000) == 2100 and checkpoints.next_end(capped, 2100) is None
    assert checkpoints.checkpoint_schedule(capped.train, 2100)[-4:] == [2000, 2040, 2080, 2100]


def test_stretches__without_evenly_spaced_checkpoints_and_from_an_off_grid_end():
    config = tiny_config(train={"schedule": "constant", "until": "phase", "linear_checkpoints": 0,
                                "max_tokens": 100 * 256})
    assert checkpoints.next_end(config, 40) == 50 and checkpoints.next_end(config, 50) == 60
    assert checkpoints.next_end(config, 53) == 60  # an end left by an older, lower cap
    assert checkpoints.checkpoint_schedule(config.train, 60)[-3:] == [40, 50, 60]


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("args, expected", [
    (["train", "markov", "train.until=later"], "train.until='later' is not allowed; choose one of: steps, phase"),
    (["train", "markov", "until=phase", "max_tokens=1000"], "train.max_tokens=1,000 is below the nominal length"),
    (["train", "markov", "max_tokens=1e9"], "train.max_tokens caps train.until=phase only"),
    (["train", "markov", "until=phase", "schedule=cosine"], "train.until=phase needs train.schedule=constant"),
    (["train", "markov", "until=phase", "max_tokens=-5"], "train.max_tokens must be >= 0"),
    (["train", "markov", "until=phase", "max_tokens=1e20"], "beyond this workbench's limit"),
])
def test_bad_until_config__one_line_exit_2(tmp_path, capsys, args, expected):
    assert cli.main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and err.startswith("interp: error: ")
    assert not any(tmp_path.iterdir())  # nothing was created


def test_resume_changes__only_until_and_max_tokens_one_line_exit_2(tmp_path, capsys):
    run_dir = training.train(tiny_config(train={"steps": 4, "schedule": "constant"}), tmp_path / "run",
                             progress=False)
    before = (run_dir / "config.json").read_text()
    for extra, expected in ((["model.n_layers=3"], "model.n_layers cannot change when a run resumes"),
                            (["markov"], "give no preset or --config"),
                            (["until=phase", "max_tokens=10"], "below the nominal length")):
        assert cli.main(["train", "--resume", str(run_dir), *extra, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1
    assert (run_dir / "config.json").read_text() == before  # a refused change writes nothing


# --------------------------------------------------------------------------- exact resume of a run that goes on

# 20 nominal steps, 8 even checkpoints (spacing 2.5: ..., 20, 22, 25, 28, 30, ...), stretches
# of 2 of them (5 steps): ends 25, 30, 35, ... up to 50.
EXTENDING = {"steps": 20, "schedule": "constant", "until": "phase", "linear_checkpoints": 8,
             "max_tokens": 50 * 256}


def not_complete_before(step: int, fail_once_at: int | None = None, asked: list | None = None):
    """A stand-in for until.run_completion: incomplete before ``step`` (so the run goes on),
    complete from it; a pure function of the step, as the real one is of the stored rows. With
    ``fail_once_at``, the first question at that step raises (a crash inside the decision);
    ``asked`` collects the steps the training loop asks at."""
    state = {"failed": False}

    def fake(run_dir, upto_step=None):
        if upto_step is not None and asked is not None:
            asked.append(upto_step)
        if upto_step is None:  # the summary asks about every row
            upto_step = int(store.steps(Path(run_dir), "eval").max())
        if fail_once_at is not None and upto_step == fail_once_at and not state["failed"]:
            state["failed"] = True
            raise RuntimeError("simulated crash while deciding")
        done = upto_step >= step
        return Completion(None, 0) if not done else _complete()
    return fake


def _complete() -> Completion:
    window = phase_change_window(TOKENS, EARLY_DROP)
    level = Movement(0.0, 0.0, 1.0, 15, rising=False, falling=False, fallen=False)
    return Completion(window, AFTER_CHECKPOINTS, [HeadMovement(1, 0, level, rise=0.5)])


def final_weights(run_dir: Path) -> dict:
    return load_file(checkpoints.list_checkpoints(run_dir)[-1].path / "model.safetensors")


def test_run_that_went_on__killed_then_resumed__same_weights_end_and_metrics(tmp_path, monkeypatch):
    # Ends 20 (train.steps), 25, 30, 35; the stand-in completes at 35. One crash at step 29 (its
    # newest checkpoint, 28, lies inside a stretch: resume must take the end 30 from it), one
    # inside the decision at 30.
    # Catches: an end not saved with the checkpoint or not restored from it (the resume would
    # stop at 28, or ask there, where the real rule may say "complete"), a schedule recomputed
    # without the end, a decision not asked again after a crash at an end.
    config = tiny_config(train=EXTENDING)
    asked_straight, asked_resumed = [], []
    monkeypatch.setattr(until, "run_completion", not_complete_before(35, asked=asked_straight))
    straight = training.train(config, tmp_path / "straight", progress=False)
    assert checkpoints.list_checkpoints(straight)[-1].step == 35
    assert checkpoints.read_run_info(straight)["until"]["outcome"] == "complete"

    real_step, calls = training._train_step, {"n": 0}

    def crashing_step(run, lr):
        calls["n"] += 1
        if calls["n"] == 30:
            raise RuntimeError("simulated crash")
        return real_step(run, lr)

    asked_first = []
    monkeypatch.setattr(until, "run_completion", not_complete_before(35, asked=asked_first))
    monkeypatch.setattr(training, "_train_step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        training.train(config, tmp_path / "crashed", progress=False)
    monkeypatch.setattr(training, "_train_step", real_step)
    crashed = tmp_path / "crashed"
    assert checkpoints.list_checkpoints(crashed)[-1].step == 28
    assert json.loads((crashed / "step_000028" / "trainer.json").read_text())["end_step"] == 30

    monkeypatch.setattr(until, "run_completion", not_complete_before(35, fail_once_at=30, asked=asked_resumed))
    with pytest.raises(RuntimeError, match="while deciding"):
        training.train(None, crashed, resume=True, progress=False)
    assert checkpoints.list_checkpoints(crashed)[-1].step == 30
    training.train(None, crashed, resume=True, progress=False)

    assert [c.step for c in checkpoints.list_checkpoints(crashed)] == \
        [c.step for c in checkpoints.list_checkpoints(straight)]
    a, b = final_weights(straight), final_weights(crashed)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    for group, column in (("train", "loss"), ("eval", "prefix_matching")):
        np.testing.assert_array_equal(store.series(straight, group)[column], store.series(crashed, group)[column])
    assert checkpoints.read_run_info(crashed)["planned_steps"] == 35
    assert asked_straight == [20, 25, 30, 35] and asked_first == [20, 25]
    assert asked_resumed == [30, 30, 35]  # 30 again after the crash inside the question


def test_until_phase__stops_at_the_cap_and_says_so(tmp_path, monkeypatch, caplog):
    config = tiny_config(train={**EXTENDING, "max_tokens": 27 * 256})
    monkeypatch.setattr(until, "run_completion", not_complete_before(10**9))
    run_dir = training.train(config, tmp_path / "capped", progress=False)
    assert [c.step for c in checkpoints.list_checkpoints(run_dir)][-3:] == [22, 25, 27]
    assert checkpoints.read_run_info(run_dir)["until"]["outcome"] == "cap"
    assert "cap of train.until=phase" in caplog.text
    # The summary says so, with a command that raises the cap; run as printed, it goes on (to
    # 30, where the stand-in now completes) and the summary then says complete.
    from interp.summary import summarize

    line = next(l for l in summarize(run_dir).splitlines() if l.startswith("change"))
    assert line.startswith("change     stopped at the cap of 27 steps (train.max_tokens) before the change")
    assert line.endswith(f"continue it with: interp train --resume {run_dir} train.max_tokens={54 * 256}")
    monkeypatch.setattr(until, "run_completion", not_complete_before(30))
    assert cli.main([*shlex.split(line.split("continue it with: ")[1])[1:], "--no-progress"]) == 0
    assert checkpoints.list_checkpoints(run_dir)[-1].step == 30
    assert checkpoints.read_run_info(run_dir)["continued"][0]["changed"] == {
        "train.max_tokens": [27 * 256, 54 * 256]}


# --------------------------------------------------------------------------- the summary and its command

def write_eval_run(path: Path, config: RunConfig, icl: np.ndarray, prefix: np.ndarray) -> Path:
    """A run folder with no training: config.json, run.json (finished) and an ``eval`` group on
    TOKENS whose band ICL score is ``icl`` and whose prefix matching is ``prefix``."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(config.to_json())
    (path / "run.json").write_text(json.dumps({"status": "finished"}))
    n_ctx = config.model.n_ctx
    losses = np.full((TOKENS.size, n_ctx), 3.0)
    losses[:, n_ctx // 2:] += icl[:, None]  # the late band only: band score = icl exactly
    losses[:, 0] = np.nan
    assert np.allclose(icl_band_score(losses), icl)
    eval_rows = {"step": np.arange(TOKENS.size), "tokens": TOKENS, "val_loss": np.nanmean(losses, 1),
                 "icl_score": icl, "icl_score_stderr": np.full(TOKENS.size, 0.01),
                 "loss_by_position": losses, "prefix_matching": prefix}
    with store.update(path) as handle:
        store.append(handle, "eval", eval_rows)
        handle["eval"].attrs.update({"icl_late_index": 31, "icl_early_index": 3, "n_examples": 16})
    return path


def test_summary__a_run_that_ended_mid_change_says_so_with_the_command(tmp_path):
    from interp.summary import summarize

    constant = tiny_config(train={"schedule": "constant"})
    rising = 0.05 + 0.35 * (TOKENS / TOKENS[-1]) ** 4
    text = summarize(write_eval_run(tmp_path / "mid", constant, LATE_DROP, heads(rising)))
    line = next(l for l in text.splitlines() if l.startswith("change"))
    assert "ICL still falling at the end; heads still rising (1.0 +" in line
    assert line.endswith(f"continue it with: interp train --resume {tmp_path / 'mid'} train.until=phase")
    # A decaying rate cannot go on: a new run from its config, with a constant rate.
    cosine = summarize(write_eval_run(tmp_path / "cos", tiny_config(), LATE_DROP, heads(rising)))
    assert (f"interp train --config {tmp_path / 'cos' / 'config.json'} train.schedule=constant "
            f"train.until=phase --out {tmp_path} --name cos-until-phase") in cosine
    # Negative control: a complete change gets no such line.
    done = summarize(write_eval_run(tmp_path / "done", constant, EARLY_DROP, heads(FORMED)))
    assert "change" not in done and "continue it" not in done


def add_analysis(path: Path, icl: np.ndarray, prefix: np.ndarray, null: np.ndarray | None = None) -> None:
    """An ``analysis`` group over the same checkpoints as :func:`write_eval_run`'s."""
    losses = np.full((TOKENS.size, 32), 3.0)
    losses[:, 16:] += icl[:, None]
    losses[:, 0] = np.nan
    rows = {"step": np.arange(TOKENS.size), "tokens": TOKENS, "loss_by_position": losses,
            "prefix_matching": prefix}
    if null is not None:
        rows["prefix_matching_null"] = null
    with store.update(path) as handle:
        store.append(handle, "analysis", rows)


def test_summary__reads_the_analysis_once_it_covers_the_run(tmp_path):
    # Catches the summary's line and the report disagreeing: training's own evaluation saw a
    # complete change, the analysis (the report's series) a head still rising; and a head
    # whose raw score rises with its null (a positional artefact) read as rising.
    from interp.summary import summarize

    constant = tiny_config(train={"schedule": "constant"})
    rising = 0.05 + 0.35 * (TOKENS / TOKENS[-1]) ** 4
    mid = write_eval_run(tmp_path / "mid", constant, EARLY_DROP, heads(FORMED))
    assert "change" not in summarize(mid)
    add_analysis(mid, EARLY_DROP, heads(rising))
    line = next(l for l in summarize(mid).splitlines() if l.startswith("change"))
    assert "heads still rising (1.0 +" in line and "train.until=phase" in line
    both = heads(rising)
    add_analysis(write_eval_run(tmp_path / "null", constant, EARLY_DROP, heads(FORMED)),
                 EARLY_DROP, both, null=both - 0.02)
    line = next(l for l in summarize(tmp_path / "null").splitlines() if l.startswith("change"))
    assert "still rising" not in line and "no head has risen 0.1 above its start" in line
    # An until=phase run that stopped on its evaluation's verdict keeps that reason, and adds
    # the analysis's reading with the command that goes on.
    phase = tiny_config(train={"schedule": "constant", "until": "phase"})
    stopped = write_eval_run(tmp_path / "stopped", phase, EARLY_DROP, heads(FORMED))
    add_analysis(stopped, EARLY_DROP, heads(rising))
    line = next(l for l in summarize(stopped).splitlines() if l.startswith("change"))
    assert line.startswith("change     complete by training's evaluation: ICL drop complete")
    assert "but the analysis (more held-out sequences, heads against their null) reads" in line
    assert "heads still rising (1.0 +" in line
    assert "continue it with" not in line  # a resume would ask training's evaluation again: complete


def test_printed_command__continues_the_run_exactly_as_until_phase_from_the_start(tmp_path, monkeypatch):
    # The command the summary prints for a finished until=steps run, run as printed: the run goes
    # on (config.json now says until=phase, run.json records the change) and ends with the
    # weights of a run that had until=phase from the start.
    monkeypatch.setattr(until, "run_completion", not_complete_before(30))
    base = tiny_config(train={"steps": 20, "schedule": "constant", "linear_checkpoints": 8})
    stopped = training.train(base, tmp_path / "stopped", progress=False)
    command = until.continue_command(stopped, checkpoints.read_config(stopped))
    argv = shlex.split(command)
    assert argv[:2] == ["interp", "train"]
    assert cli.main([*argv[1:], "--no-progress"]) == 0
    assert checkpoints.read_config(stopped).train.until == "phase"
    assert checkpoints.read_run_info(stopped)["continued"][0]["changed"] == {"train.until": ["steps", "phase"]}
    assert checkpoints.list_checkpoints(stopped)[-1].step == 30

    direct = training.train(replace(base, train=replace(base.train, until="phase")), tmp_path / "direct",
                            progress=False)
    a, b = final_weights(direct), final_weights(stopped)
    assert all((a[k] == b[k]).all() for k in a)


def test_printed_command__for_a_decaying_rate_starts_a_new_constant_rate_run(tmp_path, monkeypatch):
    monkeypatch.setattr(until, "run_completion", not_complete_before(0))
    cosine = training.train(tiny_config(train={"steps": 8}), tmp_path / "cos", progress=False)
    argv = shlex.split(until.continue_command(cosine, checkpoints.read_config(cosine)))
    assert cli.main([*argv[1:], "--no-progress"]) == 0
    new = checkpoints.read_config(tmp_path / "cos-until-phase")
    assert (new.train.schedule, new.train.until) == ("constant", "phase")
    assert replace(new, train=checkpoints.read_config(cosine).train) == checkpoints.read_config(cosine)


def test_icl_drop_with_no_head_risen__not_complete_and_said_so():
    # Catches "complete" on a closed window whose heads are level because none ever moved (the
    # man-pages run at 8.2M tokens: every layer-1 head flat at 0.03 while the ICL score fell).
    flat = heads(np.full(X.size, 0.03) + 0.005 * RNG.standard_normal(X.size))
    verdict = assess(TOKENS, EARLY_DROP, flat)
    assert verdict.closed and not verdict.rising and not verdict.risen
    assert not verdict.complete and verdict.mid_change
    assert "but no head has risen 0.1 above its start yet (best 1.0 +0.0" in verdict.describe()
    barely = heads(0.03 + 0.09 * sigmoid(1e6))  # rises 0.09: still not an induction head's 0.1
    assert not assess(TOKENS, EARLY_DROP, barely).complete
    assert assess(TOKENS, EARLY_DROP, heads(0.03 + 0.15 * sigmoid(1e6))).complete
