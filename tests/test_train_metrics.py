"""raycondi.train.metrics and the pure parts of raycondi.train.data / distill, on hand-made inputs."""

import math

import numpy as np
import pytest

from raycondi.train.data import clips_to_tensor
from raycondi.train.distill import METHODS, evaluate_student
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
    # negative entropy: row 0 uniform (lowest), rows 1, 2 peaked, row 3 in between; row 2 is the only z = 0
    expected = METHODS["st_ent"].score(predictions["logits"], predictions["confidence_logit"])
    assert expected.argmin() == 0
    assert ent["auroc"] == auroc(expected, [1, 1, 0, 1])


def test_clips_to_tensor_centre_crop_and_random_windows():
    frames = np.arange(2 * 2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 2, 4, 4, 3)
    batch = {"frames": np.array([f.tobytes() for f in frames], dtype=object),
             "frames_shape": np.array([f.shape for f in frames])}
    unit = (1 / 255, 1 / 255, 1 / 255)
    x = clips_to_tensor(batch, 2, (0, 0, 0), unit)
    assert x.shape == (2, 3, 2, 2, 2)
    expected = frames[:, :, 1:3, 1:3].transpose(0, 4, 1, 2, 3).astype(np.float32)
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5)
    windows = [frames[:, :, t:t + 2, l:l + 2][..., ::f, :] for t in range(3) for l in range(3) for f in (1, -1)]
    y = clips_to_tensor(batch, 2, (0, 0, 0), unit, rng=np.random.default_rng(0)).numpy()
    for i in range(2):
        got = y[i].transpose(1, 2, 3, 0)
        assert any(np.allclose(got, w[i], rtol=1e-5) for w in windows)
    with pytest.raises(ValueError, match="larger"):
        clips_to_tensor(batch, 5, (0, 0, 0), unit)
