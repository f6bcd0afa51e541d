"""raycondi.train.metrics and the pure parts of raycondi.train.data / distill, on hand-made inputs."""

import math

import numpy as np
import pytest

from raycondi.strategies import METHODS
from raycondi.train.distill import LOSSES, evaluate_student
from raycondi.train.metrics import auroc, clip_accuracy, video_accuracy


def test_auroc_counts_pairs():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 3 of 4 pairs ordered right
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75


def test_auroc_ties_count_half():
    # 0.5 (pos) vs 0.5 (neg) is a tie: (0.5 + 1 + 1 + 1) / 4
    assert auroc([0.5, 0.5, 0.2, 0.9], [True, False, False, True]) == 0.875
    assert auroc([0.3] * 5, [1, 0, 1, 0, 0]) == 0.5


def test_auroc_perfect_inverted_and_undefined():
    assert auroc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert auroc([0, 1, 2, 3], [1, 1, 0, 0]) == 0.0
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))
    with pytest.raises(ValueError):
        auroc([0.1, 0.2], [1])


def test_clip_accuracy():
    assert clip_accuracy([[0.1, 0.9], [2.0, 1.0], [0.0, 5.0]], [1, 1, 1]) == pytest.approx(2 / 3)


# video "a" (label 0), clips given out of order; video "b" (label 2), one clip
VIDEOS = np.array(["a", "b", "a", "a"])
CLIPS = np.array([2, 0, 0, 1])
LABELS = np.array([0, 2, 0, 0])
PROBS = np.array([[0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])


def test_video_accuracy_dense_averages_every_clip():
    # a: mean (0.433, 0.467, 0.1) -> class 1, wrong; b: right
    assert video_accuracy(VIDEOS, CLIPS, LABELS, PROBS) == 0.5


def test_video_accuracy_top_k_by_score():
    scores = np.array([0.5, 0.0, 0.1, 0.9])  # a: clip 1 best, then clip 2
    assert video_accuracy(VIDEOS, CLIPS, LABELS, PROBS, scores, 1) == 1.0  # clip 1 -> class 0
    assert video_accuracy(VIDEOS, CLIPS, LABELS, PROBS, scores, 2) == 1.0  # (0.55, 0.35, 0.1)
    assert video_accuracy(VIDEOS, CLIPS, LABELS, PROBS, scores, 3) == 0.5  # every clip: dense
    tied = np.array([0.5, 0.0, 0.9, 0.9])  # clips 0 and 1 tie: the lower index (clip 0, class 1) goes
    assert video_accuracy(VIDEOS, CLIPS, LABELS, PROBS, tied, 1) == 0.5
    with pytest.raises(ValueError):
        video_accuracy(VIDEOS, CLIPS, LABELS, PROBS, scores)


def test_evaluate_student_scores_per_method():
    teacher_logits = np.log(PROBS)
    predictions = {
        "video_id": VIDEOS, "clip_index": CLIPS, "label": LABELS,
        "logits": np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 9.0], [0.0, 5.0, 0.0], [1.0, 0.0, 0.0]]),
        "confidence_logit": np.array([0.0, -1.0, -2.0, 3.0]),
    }
    # z: teacher right on clips 2 (a), 0 (b) and 1 (a) -> rows 0, 1, 3; wrong on row 2
    conf = evaluate_student("condi_sr", predictions, teacher_logits, (1,))
    assert conf["teacher_clip_accuracy"] == 0.75
    assert conf["auroc"] == 1.0  # the only z = 0 clip (row 2, logit -2) has the lowest confidence
    assert conf["video_accuracy_dense"] == 0.5 and conf["video_accuracy_k1"] == 1.0
    assert conf["clip_accuracy"] == 0.75  # row 0 ties -> class 0 = its label; row 2 says 1, label 0
    ent = evaluate_student("st_ent", predictions, teacher_logits, (1,))
    # negative entropy of the softmax rows: row 0 uniform -ln 3 = -1.099, row 1 (a 9 logit) -0.002, row 2
    # (a 5) -0.083, row 3 ([e, 1, 1] / (e + 2)) -0.969. The only z = 0 clip, row 2, beats rows 0 and 3 and
    # loses to row 1: AUROC 1/3.
    assert ent["auroc"] == pytest.approx(1 / 3)


def test_every_distillation_method_of_the_table_has_a_loss():
    assert set(LOSSES) == set(METHODS) == {"condi_sr", "st_ent", "st_conf", "bce_conf"}
