"""tune_blend_on_clips: the blend weights of two or three members chosen on labelled clips, on synthetic window
probabilities whose best weights are known."""

from __future__ import annotations

import numpy as np
import pytest

from instrument_classifier.evaluation.tuning import tune_blend_on_clips, weight_grid


def _clips(n_clips: int = 60, n_labels: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n_clips, n_labels)) < 0.4).astype(np.int8)
    y[np.arange(n_clips), rng.integers(0, n_labels, n_clips)] = 1  # every label with enough clips
    windows = rng.integers(1, 5, n_clips)
    return y, windows, rng


def test_a_member_that_knows_the_answer_gets_all_the_weight():
    """The second member separates every label by a margin of 0.1, the first is noise: only weight 1 separates
    them all (from 0.91 on), so it alone has no false alarm."""
    y, windows, rng = _clips()
    good = [np.repeat(np.where(label, 0.55, 0.45)[None], k, axis=0) for label, k in zip(y, windows)]
    noise = [rng.random((k, y.shape[1])) for k in windows]
    tuned = tune_blend_on_clips(y, [noise, good])
    assert tuned["weights"] == [0.0, 1.0]
    assert tuned["cross_validated"]["f1_micro"] == pytest.approx(1.0)
    assert tuned["cross_validated"]["false_alarms_per_clip"] == 0.0
    assert [c["weights"] for c in tuned["candidates"]] == [[k / 10, (10 - k) / 10] for k in range(10, -1, -1)]
    assert [tuple(c["weights"]) for c in tuned["candidates"]] == weight_grid(2)
    assert len(tuned["thresholds"]) == y.shape[1]
    # the members swapped: all the weight on the first
    assert tune_blend_on_clips(y, [good, noise])["weights"] == [1.0, 0.0]
    # a third member of noise gets no weight either: 66 weightings in tenths
    three = tune_blend_on_clips(y, [noise, good, [p[::-1].copy() for p in noise]], repeats=5)
    assert three["weights"] == [0.0, 1.0, 0.0] and len(three["candidates"]) == 66


def test_each_member_blind_to_one_label_needs_both():
    """The first member sees labels 0 and 1 and guesses label 2, the second sees label 2 and guesses the others:
    only a blend gets every label right."""
    y, windows, rng = _clips(n_clips=80, seed=1)
    first, second = [], []
    for label, k in zip(y, windows):
        clear = np.where(label, 0.95, 0.05)
        guess = rng.random((k, 3))
        first.append(np.concatenate([np.repeat(clear[None, :2], k, axis=0), guess[:, 2:]], axis=1))
        second.append(np.concatenate([guess[:, :2] * 0.2, np.repeat(clear[None, 2:], k, axis=0)], axis=1))
    tuned = tune_blend_on_clips(y, [first, second], repeats=5)
    assert 0.0 < tuned["weights"][1] < 1.0
    by_weight = {c["weights"][1]: c["f1_micro"] for c in tuned["candidates"]}
    assert by_weight[tuned["weights"][1]] > max(by_weight[0.0], by_weight[1.0])


def test_ties_go_to_fewer_false_alarms_then_higher_auc():
    """Identical members: every weight scores the same, so the tie-breaks decide, down to the first weight."""
    y, windows, rng = _clips(seed=2)
    same = [rng.random((k, 3)) for k in windows]
    tuned = tune_blend_on_clips(y, [same, [p.copy() for p in same]], repeats=5)
    assert tuned["weights"] == [1.0, 0.0]  # all tied on F1, false alarms and AUC: the first tried
    # tolerance: a weight within 0.01 of the best F1 with fewer false alarms wins
    y, windows, rng = _clips(n_clips=100, seed=3)
    good = [np.repeat(np.where(label, 0.9, 0.1)[None], k, axis=0) for label, k in zip(y, windows)]
    tuned = tune_blend_on_clips(y, [good, good], weights=[(0.7, 0.3), (0.4, 0.6)], tolerance=0.0, repeats=5)
    assert tuned["weights"] == [0.7, 0.3]


def test_bad_inputs_are_refused():
    y, windows, rng = _clips(n_clips=10)
    probs = [rng.random((k, 3)) for k in windows]
    with pytest.raises(ValueError, match="labelled clips"):
        tune_blend_on_clips(y, [probs[:5], probs])
    with pytest.raises(ValueError, match="two members or more"):
        tune_blend_on_clips(y, [probs])
    with pytest.raises(ValueError, match=r"\[0, 1\] summing to 1"):
        tune_blend_on_clips(y, [probs, probs], weights=[(1.5, -0.5)])
    with pytest.raises(ValueError, match="summing to 1"):
        tune_blend_on_clips(y, [probs, probs], weights=[(0.5, 0.4)])
