"""Tests for raycondi.selection on one hand-made video: 5 clips, 3 classes.

Per clip (student entropy H and max prob computed from the student's probabilities):

    clip  teacher probs     student probs        H          max   z~
    0     [0.6, 0.3, 0.1]   [0.80, 0.10, 0.10]   0.639032   0.8   0.20
    1     [0.2, 0.7, 0.1]   [0.40, 0.30, 0.30]   1.088900   0.4   0.90
    2     [0.1, 0.1, 0.8]   [0.05, 0.15, 0.80]   0.612870   0.8   0.95
    3     [0.5, 0.4, 0.1]   [0.60, 0.30, 0.10]   0.897946   0.6   0.90
    4     [0.3, 0.3, 0.4]   [0.50, 0.25, 0.25]   1.039721   0.5   0.70

Rankings: entropy ascending 2, 0, 3, 4, 1; max prob descending 0, 2 (tie 0.8 -> lower index), 3, 4, 1;
z~ descending 2, 1, 3 (tie 0.9 -> lower index), 4, 0; teacher prob of class 0 descending 0, 3, 4, 1, 2.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from raycondi.selection import (
    Selection,
    aggregate,
    bottom_k,
    dense,
    equidistant_indices,
    equidistant_k,
    keyframe_candidates,
    max_prob,
    oracle_k,
    predictive_entropy,
    random_indices,
    random_k,
    score_k,
    split_indices,
    split_k,
    top_k,
    video_rng,
)

TEACHER = np.array(
    [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4]]
)
STUDENT = np.array(
    [[0.8, 0.1, 0.1], [0.4, 0.3, 0.3], [0.05, 0.15, 0.8], [0.6, 0.3, 0.1], [0.5, 0.25, 0.25]]
)
CONF = np.array([0.2, 0.9, 0.95, 0.9, 0.7])


def _check(selection: Selection, teacher_clips, probs, student_clips=()) -> None:
    assert_array_equal(selection.teacher_clips, np.array(teacher_clips, dtype=np.int64))
    assert_array_equal(selection.student_clips, np.array(student_clips, dtype=np.int64))
    assert selection.teacher_clips.dtype == np.int64
    assert_allclose(selection.probs, probs, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# scores and pickers
# --------------------------------------------------------------------------------------------------
def test_predictive_entropy_and_max_prob():
    # clip 0: -(0.8 ln 0.8 + 2 * 0.1 ln 0.1) = 0.1785152 + 0.4605170 = 0.6390322
    # clip 4: -(0.5 ln 0.5 + 2 * 0.25 ln 0.25) = 0.3465736 + 0.6931472 = 1.0397208
    assert_allclose(predictive_entropy(STUDENT), [0.6390322, 1.0889000, 0.6128700, 0.8979457, 1.0397208], atol=1e-6)
    assert_allclose(predictive_entropy([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]), [0.0, np.log(2)], atol=1e-15)
    assert_array_equal(max_prob(STUDENT), [0.8, 0.4, 0.8, 0.6, 0.5])


def test_top_k_and_bottom_k_break_ties_by_lower_index():
    assert_array_equal(top_k([1.0, 3.0, 3.0, 2.0], 2), [1, 2])
    assert_array_equal(top_k([1.0, 3.0, 3.0, 2.0], 3), [1, 2, 3])
    assert_array_equal(bottom_k([2.0, 1.0, 1.0, 3.0], 2), [1, 2])
    assert_array_equal(top_k([5.0, 5.0, 5.0], 2), [0, 1])
    assert_array_equal(bottom_k([5.0, 5.0, 5.0], 2), [0, 1])
    assert_array_equal(top_k([0.1, 0.7], 9), [1, 0])  # K > N: every clip, ranked


@pytest.mark.parametrize(
    "n,k,expected",
    [
        (10, 3, [1, 5, 8]),
        (8, 2, [2, 6]),
        (5, 1, [2]),
        (5, 2, [1, 3]),
        (5, 3, [0, 2, 4]),
        (4, 4, [0, 1, 2, 3]),
        (3, 7, [0, 1, 2]),
    ],
)
def test_equidistant_indices_are_segment_centres(n, k, expected):
    assert_array_equal(equidistant_indices(n, k), expected)


def test_equidistant_indices_are_distinct_for_every_k_below_n():
    for n in range(1, 40):
        for k in range(1, n + 1):
            picked = equidistant_indices(n, k)
            assert len(np.unique(picked)) == k and picked.min() >= 0 and picked.max() < n


def test_random_indices_are_reproducible_distinct_and_uniform():
    first = random_indices(20, 5, 123)
    assert_array_equal(first, random_indices(20, 5, 123))
    assert_array_equal(first, random_indices(20, 5, np.random.default_rng(123)))
    assert len(np.unique(first)) == 5 and np.all(np.diff(first) > 0)
    assert_array_equal(random_indices(3, 3, 0), [0, 1, 2])
    assert_array_equal(random_indices(3, 10, 0), [0, 1, 2])
    rng = np.random.default_rng(0)
    counts = np.zeros(5)
    for _ in range(3000):
        counts[random_indices(5, 2, rng)] += 1
    assert_allclose(counts / 3000, 0.4, atol=0.04)  # each clip chosen with probability k/n


def test_split_indices_never_reuses_a_clip():
    # Clip 2 has the lowest entropy and the highest z~: the student takes it, the teacher gets the next best.
    student, teacher = split_indices(predictive_entropy(STUDENT), CONF, k=3, k_student=1)
    assert_array_equal(student, [2])
    assert_array_equal(teacher, [1, 3])


# --------------------------------------------------------------------------------------------------
# aggregate
# --------------------------------------------------------------------------------------------------
def test_aggregate_plain_and_confidence_weighted():
    # plain: ([0.6,0.3,0.1] + [0.2,0.7,0.1] + [0.05,0.15,0.8]) / 3 = [0.85, 1.15, 1.0] / 3
    assert_allclose(aggregate(TEACHER[:2], STUDENT[2:3]), [0.85 / 3, 1.15 / 3, 1.0 / 3], atol=1e-12)
    # weighted teacher group with weights [3, 1]: T = (3*[0.6,0.3,0.1] + [0.2,0.7,0.1]) / 4 = [0.5, 0.4, 0.1],
    # counting as 2 clips beside 1 student clip: (2*[0.5,0.4,0.1] + [0.05,0.15,0.8]) / 3 = [1.05, 0.95, 1.0] / 3
    assert_allclose(
        aggregate(TEACHER[:2], STUDENT[2:3], teacher_weights=[3.0, 1.0]), [0.35, 0.95 / 3, 1.0 / 3], atol=1e-12
    )
    assert_allclose(aggregate(TEACHER[:2], teacher_weights=[2.0, 2.0]), [0.4, 0.5, 0.1], atol=1e-12)
    assert_allclose(aggregate(np.empty((0, 3)), STUDENT[:1]), [0.8, 0.1, 0.1], atol=1e-12)


def test_aggregate_rejects_bad_input():
    with pytest.raises(ValueError, match="^teacher_probs:"):
        aggregate(np.empty((0, 3)))
    with pytest.raises(ValueError, match="^teacher_probs:"):
        aggregate(TEACHER[0])
    with pytest.raises(ValueError, match="^student_probs:"):
        aggregate(TEACHER, STUDENT[:, :2])
    with pytest.raises(ValueError, match="^teacher_weights:"):
        aggregate(TEACHER[:2], teacher_weights=[1.0])
    with pytest.raises(ValueError, match="^teacher_weights:"):
        aggregate(TEACHER[:2], teacher_weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="^teacher_weights:"):
        aggregate(TEACHER[:2], teacher_weights=[0.0, 0.0])


# --------------------------------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------------------------------
def test_dense():
    # ([0.6+0.2+0.1+0.5+0.3, 0.3+0.7+0.1+0.4+0.3, 0.1+0.1+0.8+0.1+0.4]) / 5 = [1.7, 1.8, 1.5] / 5
    selection = dense(TEACHER)
    _check(selection, [0, 1, 2, 3, 4], [0.34, 0.36, 0.30])
    assert selection.label == 1


def test_random_k():
    selection = random_k(TEACHER, 2, 7)
    again = random_k(TEACHER, 2, np.random.default_rng(7))
    assert_array_equal(selection.teacher_clips, again.teacher_clips)
    assert len(selection.teacher_clips) == 2
    assert_allclose(selection.probs, TEACHER[selection.teacher_clips].mean(axis=0), atol=1e-12)
    _check(random_k(TEACHER, 9, 7), [0, 1, 2, 3, 4], [0.34, 0.36, 0.30])


def test_video_rng_draws_the_same_clips_for_a_video_whatever_else_runs():
    first = random_indices(40, 5, video_rng(3, "class/video_7"))
    again = random_indices(40, 5, video_rng(3, "class/video_7"))
    assert_array_equal(first, again)
    # the stream labels written by earlier versions were drawn from: default_rng([seed, crc32(id)])
    assert_array_equal(first, random_indices(40, 5, np.random.default_rng([3, 4065668260])))
    assert not np.array_equal(first, random_indices(40, 5, video_rng(3, "class/video_8")))
    assert not np.array_equal(first, random_indices(40, 5, video_rng(4, "class/video_7")))


def test_keyframe_candidates_hand_computed():
    assert_array_equal(keyframe_candidates([0, 16, 32, 8, 24], 32), [True, True, False, True, True])
    assert_array_equal(keyframe_candidates([0, 16, 32, 8, 24], 16), [True, False, False, True, False])
    assert_array_equal(keyframe_candidates([-1, -1, -1], 16), [True, True, True])  # keyframes unknown: all
    with pytest.raises(ValueError, match="^reach:"):
        keyframe_candidates([0, 8], 0)


def test_equidistant_k():
    # K=2 of 5: clips 1, 3 -> ([0.2,0.7,0.1] + [0.5,0.4,0.1]) / 2
    _check(equidistant_k(TEACHER, 2), [1, 3], [0.35, 0.55, 0.10])
    # K=3 of 5: clips 0, 2, 4 -> [0.6+0.1+0.3, 0.3+0.1+0.3, 0.1+0.8+0.4] / 3 = [1.0, 0.7, 1.3] / 3
    _check(equidistant_k(TEACHER, 3), [0, 2, 4], [1.0 / 3, 0.7 / 3, 1.3 / 3])
    _check(equidistant_k(TEACHER, 5), [0, 1, 2, 3, 4], [0.34, 0.36, 0.30])


def test_score_k_by_max_prob_with_tie():
    # Clips 0 and 2 tie at 0.8: K=1 takes clip 0.
    _check(score_k(TEACHER, max_prob(STUDENT), 1), [0], [0.6, 0.3, 0.1])
    # K=3: clips 0, 2, 3 -> [0.6+0.1+0.5, 0.3+0.1+0.4, 0.1+0.8+0.1] / 3 = [1.2, 0.8, 1.0] / 3
    _check(score_k(TEACHER, max_prob(STUDENT), 3), [0, 2, 3], [0.4, 0.8 / 3, 1.0 / 3])


def test_score_k_by_negative_entropy():
    # K=2: clips 2, 0 -> ([0.1,0.1,0.8] + [0.6,0.3,0.1]) / 2
    _check(score_k(TEACHER, -predictive_entropy(STUDENT), 2), [2, 0], [0.35, 0.20, 0.45])
    _check(score_k(TEACHER, -predictive_entropy(STUDENT), 9), [2, 0, 3, 4, 1], [0.34, 0.36, 0.30])


def test_score_k_by_negative_entropy_tie_between_identical_rows():
    student = np.array([[0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.9, 0.1, 0.0]])
    teacher = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    _check(score_k(teacher, -predictive_entropy(student), 1), [1], [0.0, 1.0, 0.0])


def test_score_k_by_confidence_with_tie():
    # z~ = [0.2, 0.9, 0.95, 0.9, 0.7]; K=2: clips 2, 1 (1 and 3 tie at 0.9: lower index first)
    # -> ([0.1,0.1,0.8] + [0.2,0.7,0.1]) / 2
    _check(score_k(TEACHER, CONF, 2), [2, 1], [0.15, 0.40, 0.45])
    # K=3: clips 2, 1, 3 -> [0.1+0.2+0.5, 0.1+0.7+0.4, 0.8+0.1+0.1] / 3 = [0.8, 1.2, 1.0] / 3
    _check(score_k(TEACHER, CONF, 3), [2, 1, 3], [0.8 / 3, 0.4, 1.0 / 3])
    _check(score_k(TEACHER, CONF, 5), [2, 1, 3, 4, 0], [0.34, 0.36, 0.30])


def test_split_k():
    # K=3, K_s=1: student clip 2 (lowest entropy), teacher clips 1, 3 (highest z~ among 0, 1, 3, 4)
    # -> (S2 + T1 + T3) / 3 = ([0.05,0.15,0.8] + [0.2,0.7,0.1] + [0.5,0.4,0.1]) / 3 = [0.75, 1.25, 1.0] / 3
    _check(split_k(TEACHER, STUDENT, CONF, 3, 1), [1, 3], [0.25, 1.25 / 3, 1.0 / 3], student_clips=[2])
    # K=3, K_s=2: student 2, 0; teacher 1 -> ([0.05,0.15,0.8] + [0.8,0.1,0.1] + [0.2,0.7,0.1]) / 3
    _check(split_k(TEACHER, STUDENT, CONF, 3, 2), [1], [0.35, 0.95 / 3, 1.0 / 3], student_clips=[2, 0])


def test_split_k_with_k_student_zero_is_score_k():
    _check(split_k(TEACHER, STUDENT, CONF, 3, 0), [2, 1, 3], [0.8 / 3, 0.4, 1.0 / 3])


def test_split_k_with_k_student_equal_k_uses_the_student_alone():
    # student 2, 0, 3 -> ([0.05,0.15,0.8] + [0.8,0.1,0.1] + [0.6,0.3,0.1]) / 3 = [1.45, 0.55, 1.0] / 3
    _check(split_k(TEACHER, STUDENT, CONF, 3, 3), [], [1.45 / 3, 0.55 / 3, 1.0 / 3], student_clips=[2, 0, 3])


def test_split_k_with_k_above_n_uses_every_clip():
    # K=7 > N=5, K_s=2: student 2, 0; teacher 1, 3, 4
    # -> [0.05+0.8+0.2+0.5+0.3, 0.15+0.1+0.7+0.4+0.3, 0.8+0.1+0.1+0.1+0.4] / 5 = [1.85, 1.65, 1.5] / 5
    _check(split_k(TEACHER, STUDENT, CONF, 7, 2), [1, 3, 4], [0.37, 0.33, 0.30], student_clips=[2, 0])
    # K_s=6 > N: the student takes every clip -> mean of STUDENT = [2.35, 1.1, 1.55] / 5
    _check(split_k(TEACHER, STUDENT, CONF, 7, 6), [], [0.47, 0.22, 0.31], student_clips=[2, 0, 3, 4, 1])


def test_split_k_confidence_weighting():
    # K=4, K_s=1: student 2; teacher 1, 3, 4 with z~ 0.9, 0.9, 0.7.
    # T = (0.9*[0.2,0.7,0.1] + 0.9*[0.5,0.4,0.1] + 0.7*[0.3,0.3,0.4]) / 2.5
    #   = [0.84, 1.2, 0.46] / 2.5 = [0.336, 0.48, 0.184]
    # (3*T + S2) / 4 = ([1.008, 1.44, 0.552] + [0.05, 0.15, 0.8]) / 4 = [0.2645, 0.3975, 0.338]
    weighted = split_k(TEACHER, STUDENT, CONF, 4, 1, weighting="confidence")
    _check(weighted, [1, 3, 4], [0.2645, 0.3975, 0.338], student_clips=[2])
    # Plain mean: [0.05+0.2+0.5+0.3, 0.15+0.7+0.4+0.3, 0.8+0.1+0.1+0.4] / 4 = [1.05, 1.55, 1.4] / 4
    _check(split_k(TEACHER, STUDENT, CONF, 4, 1), [1, 3, 4], [0.2625, 0.3875, 0.35], student_clips=[2])


def test_oracle_k():
    # label 0: teacher column [0.6, 0.2, 0.1, 0.5, 0.3]; K=2 -> clips 0, 3 -> ([0.6,0.3,0.1] + [0.5,0.4,0.1]) / 2
    _check(oracle_k(TEACHER, 0, 2), [0, 3], [0.55, 0.35, 0.10])
    # label 2: column [0.1, 0.1, 0.8, 0.1, 0.4]; K=4 -> 2, 4, then 0, 1 of the three tied at 0.1
    # -> [0.1+0.3+0.6+0.2, 0.1+0.3+0.3+0.7, 0.8+0.4+0.1+0.1] / 4 = [1.2, 1.4, 1.4] / 4
    _check(oracle_k(TEACHER, 2, 4), [2, 4, 0, 1], [0.3, 0.35, 0.35])
    _check(oracle_k(TEACHER, 1, 6), [1, 3, 0, 4, 2], [0.34, 0.36, 0.30])


# --------------------------------------------------------------------------------------------------
# Selection and argument checks
# --------------------------------------------------------------------------------------------------
def test_selection_is_immutable_and_rejects_shared_clips():
    selection = score_k(TEACHER, CONF, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        selection.probs = np.zeros(3)
    with pytest.raises(ValueError):
        selection.probs[0] = 1.0
    with pytest.raises(ValueError, match="^student_clips:"):
        Selection(probs=np.ones(3) / 3, teacher_clips=np.array([1, 2]), student_clips=np.array([2]))


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: score_k(TEACHER, CONF, 0), "k"),
        (lambda: score_k(TEACHER, CONF, 2.0), "k"),
        (lambda: score_k(TEACHER, CONF, True), "k"),
        (lambda: score_k(TEACHER, CONF[:4], 2), "scores"),
        (lambda: score_k(TEACHER, [0.1, np.nan, 0.2, 0.3, 0.4], 2), "scores"),
        (lambda: score_k(TEACHER[0], CONF, 2), "teacher_probs"),
        (lambda: dense(np.empty((0, 3))), "teacher_probs"),
        (lambda: random_k(TEACHER, 0, 1), "k"),
        (lambda: random_k(TEACHER, 2, None), "rng"),
        (lambda: equidistant_k(TEACHER, -1), "k"),
        (lambda: split_k(TEACHER, STUDENT, CONF, 2, 3), "k_student"),
        (lambda: split_k(TEACHER, STUDENT, CONF, 2, -1), "k_student"),
        (lambda: split_k(TEACHER, STUDENT, CONF, 2, 1, weighting="max"), "weighting"),
        (lambda: oracle_k(TEACHER, 3, 2), "label"),
        (lambda: oracle_k(TEACHER, -1, 2), "label"),
        (lambda: top_k([1.0, 2.0], 0), "k"),
        (lambda: top_k([[1.0, 2.0]], 1), "scores"),
        (lambda: split_indices([0.1, 0.2], [0.3], 1, 0), "confidence"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()
