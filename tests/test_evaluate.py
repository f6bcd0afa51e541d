"""raycondi.evaluation: the tables' arithmetic on hand-made per-clip outputs, the timing model against the
labelling job's own counting, the files, and `raycondi evaluate` end to end on real Ray."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import struct
import zlib

import matplotlib.image
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from raycondi import selection
from raycondi.cli import main
from raycondi.evaluation import report
from raycondi.evaluation.tables import (
    VideoClips,
    ambiguity_rows,
    clean_clips,
    evaluate_strategy,
    ks_sweep,
    results,
    select,
    strategies_for,
)
from raycondi.evaluation.timing import ClipCosts, ClipCounts, clip_counts, video_seconds
from raycondi.pipeline import select_clips
from raycondi.selection import video_rng
from raycondi.strategies import METHODS, names
from raycondi.video.decode import Clip

KS = (1, 3)


# --------------------------------------------------------------------------------------------------
# the fixed per-clip outputs: 3 videos, 3 classes
# --------------------------------------------------------------------------------------------------
def teacher_rows(classes: list[int], peak: float = 0.8) -> np.ndarray:
    """The teacher's probabilities: ``peak`` on each clip's class, the rest shared equally."""
    probs = np.full((len(classes), 3), (1 - peak) / 2)
    probs[np.arange(len(classes)), classes] = peak
    return probs


def student_rows(peaks: list[float], classes: list[int]) -> np.ndarray:
    """A student's probabilities: ``peaks[i]`` on ``classes[i]``; a higher peak is a lower entropy."""
    probs = np.array([[(1 - p) / 2] * 3 for p in peaks])
    probs[np.arange(len(peaks)), classes] = peaks
    return probs


def video(video_id, label, teacher, condi_peaks, student_classes, st_ent_peaks, confidence, clean=None):
    condi = student_rows(condi_peaks, student_classes)
    return VideoClips(
        video_id, label, teacher,
        student_probs={"condi_sr": condi, "st_ent": student_rows(st_ent_peaks, student_classes),
                       "st_conf": condi, "bce_conf": condi},
        confidence={m: np.asarray(c, dtype=np.float64) for m, c in confidence.items()},
        clean=None if clean is None else np.asarray(clean, dtype=bool),
    )


# Teacher classes: A [1,0,1,0,1] (label 0, dense wrong), B [1,1,2] (label 1), C [2,0] (label 2, clip 0 peaked 0.9).
VIDEOS = [
    video("a", 0, teacher_rows([1, 0, 1, 0, 1]), [0.5, 0.6, 0.9, 0.4, 0.7], [1, 0, 1, 0, 1],
          [0.4, 0.95, 0.5, 0.9, 0.6],
          {"condi_sr": [0.2, 0.9, 0.1, 0.7, 0.3], "bce_conf": [0.6, 0.5, 0.4, 0.3, 0.2],
           "st_conf": [0.3, 0.2, 0.1, 0.9, 0.8]},
          clean=[False, True, False, True, False]),
    video("b", 1, teacher_rows([1, 1, 2]), [0.9, 0.5, 0.6], [1, 1, 2], [0.5, 0.4, 0.9],
          {"condi_sr": [0.1, 0.2, 0.9], "bce_conf": [0.9, 0.1, 0.2], "st_conf": [0.2, 0.9, 0.1]},
          clean=[True, True, False]),
    video("c", 2, np.array([[0.05, 0.05, 0.9], [0.8, 0.1, 0.1]]), [0.4, 0.8], [2, 0], [0.8, 0.4],
          {"condi_sr": [0.8, 0.3], "bce_conf": [0.3, 0.8], "st_conf": [0.5, 0.5]}),  # st_conf tie: clip 0
]

# Which videos (a, b, c) each rule gets right, worked out by hand from the arrays above.
EXPECTED = {
    ("oracle", 1): 3, ("oracle", 3): 3,            # a: clips 1 / 1,3,0; b: 0; c: 0
    ("equidistant", 1): 1, ("equidistant", 3): 2,  # a: clip 2 / 0,2,4 (all class 1); b: clip 1; c: clip 1 / all
    ("max_prob", 1): 1, ("max_prob", 3): 2,        # condi_sr's head: a: clip 2 / 2,4,1; b: 0; c: 1 / all
    ("bce_conf", 1): 1, ("bce_conf", 3): 2,        # a: clip 0 / 0,1,2; b: 0; c: 1 / all
    ("st_ent", 1): 2, ("st_ent", 3): 3,            # a: clip 1 / 1,3,4; b: clip 2 (wrong); c: 0 / all
    ("st_conf", 1): 3, ("st_conf", 3): 2,          # a: clip 3 / 3,4,0 (wrong); b: 1; c: 0 (tie -> lower index)
    ("condi_sr", 1): 2, ("condi_sr", 3): 3,        # a: clip 1 / 1,3,4; b: clip 2 (wrong); c: 0 / all
    ("dense", None): 2,                            # a: class 1 has 3 of 5 clips (wrong); b, c right
}
COSTS = ClipCosts(decode_s=0.01, teacher_s=0.1,
                  student_s={"condi_sr": 0.02, "st_ent": 0.03, "st_conf": 0.04, "bce_conf": 0.05})


def test_every_strategy_and_k_hand_computed():
    strategies = [s for s in strategies_for(METHODS) if s != "random"]
    rows = results(VIDEOS, KS, strategies, max_prob_student="condi_sr")
    assert {(r.strategy, r.k) for r in rows} == set(EXPECTED)
    for r in rows:
        assert r.videos == 3
        assert r.accuracy == pytest.approx(EXPECTED[r.strategy, r.k] / 3), (r.strategy, r.k)


def test_strategies_follow_the_students_given():
    assert strategies_for(METHODS) == names()
    assert strategies_for(["st_ent"]) == ("oracle", "random", "equidistant", "max_prob", "st_ent", "dense")
    assert strategies_for([]) == ("oracle", "random", "equidistant", "dense")


def test_oracle_is_at_least_every_other_strategy_at_each_k():
    rows = results(VIDEOS, KS, strategies_for(METHODS), max_prob_student="condi_sr")
    oracle = {r.k: r.accuracy for r in rows if r.strategy == "oracle"}
    for r in rows:
        for k in KS if r.k is None else [r.k]:
            assert oracle[k] >= r.accuracy, (r.strategy, r.k)


def test_random_is_the_mean_over_three_seeds():
    # a draw is right when the mean of its clips' teacher probabilities peaks on the label
    for k in KS:
        per_seed = []
        for seed in (0, 1, 2):
            right = 0
            for v in VIDEOS:
                drawn = selection.random_indices(v.num_clips, k, video_rng(seed, v.video_id))
                right += int(np.argmax(v.teacher_probs[drawn].mean(axis=0))) == v.label
            per_seed.append(right / 3)
            assert evaluate_strategy(VIDEOS, "random", k, seeds=(seed,)).accuracy == pytest.approx(right / 3)
        assert evaluate_strategy(VIDEOS, "random", k).accuracy == pytest.approx(np.mean(per_seed))
    # K >= N for every video: every seed uses every clip, so Random is Dense.
    assert evaluate_strategy(VIDEOS, "random", 5).accuracy == pytest.approx(2 / 3)


def test_random_picks_the_labelling_jobs_clips():
    clips = list(make_clips(7))
    chosen = select_clips(iter(clips), "random", 3, rng=video_rng(4, "v"))
    v = VideoClips("v", 0, teacher_rows([0] * 7))
    np.testing.assert_array_equal(select(v, "random", 3, seed=4).teacher_clips, chosen.teacher_clips)


def test_ks_sweep_hand_computed():
    rows = ks_sweep(VIDEOS, KS, costs=COSTS)
    assert [(r.k, r.k_student) for r in rows] == [(1, 0), (1, 1), (3, 0), (3, 1), (3, 2), (3, 3)]
    # K=1, K_s=1: the student alone on its lowest-entropy clip: a clip 2 (class 1), b clip 0 (1), c clip 1 (0).
    # K=3, K_s=1: a: student clip 2 + teacher 1,3 -> 0; b: student 0 + teacher 1,2 -> 1; c: student 1 + teacher 0 -> 2.
    # K=3, K_s=2: a: student 2,4 + teacher 1 -> 1; b: student 0,2 + teacher 1 -> 1; c: student 1,0 -> 0.
    assert [r.accuracy * 3 for r in rows] == pytest.approx([2, 1, 3, 3, 1, 1])
    assert [r.teacher_clips * 3 for r in rows] == pytest.approx([3, 0, 8, 5, 2, 0])
    # every clip decoded and scored: (5 + 3 + 2) / 3 per video
    assert {round(r.decoded_clips * 3) for r in rows} == {10} and {round(r.student_clips * 3) for r in rows} == {10}
    # seconds: (10 decode * 0.01 + 10 student * 0.02 + K_t * 0.1) / 3
    assert [r.seconds for r in rows] == pytest.approx([(0.3 + t * 0.1) / 3 for t in (3, 0, 8, 5, 2, 0)])
    assert rows[2].accuracy == evaluate_strategy(VIDEOS, "condi_sr", 3).accuracy  # K_s = 0 is Fig. 2b


# --------------------------------------------------------------------------------------------------
# timing model
# --------------------------------------------------------------------------------------------------
def test_timing_model_hand_computed():
    rows = {(r.strategy, r.k): r for r in results(VIDEOS, KS, strategies_for(METHODS), costs=COSTS,
                                                  max_prob_student="condi_sr")}
    # videos of 5, 3 and 2 clips: 10 clips decoded in all
    expected = {  # (student clips, teacher clips) over the 3 videos, student cost per clip
        ("dense", None): (0, 10, 0), ("equidistant", 1): (0, 3, 0), ("equidistant", 3): (0, 8, 0),
        ("random", 3): (0, 8, 0), ("condi_sr", 1): (10, 3, 0.02), ("condi_sr", 3): (10, 8, 0.02),
        ("st_ent", 1): (10, 3, 0.03), ("max_prob", 1): (10, 3, 0.02), ("bce_conf", 3): (10, 8, 0.05),
    }
    for key, (student, teacher, student_cost) in expected.items():
        r = rows[key]
        assert (r.decoded_clips * 3, r.student_clips * 3, r.teacher_clips * 3) == pytest.approx((10, student, teacher))
        assert r.seconds == pytest.approx((10 * 0.01 + student * student_cost + teacher * 0.1) / 3), key
    assert rows["oracle", 1].seconds is None  # needs the label: no labelling run executes it
    assert video_seconds(ClipCounts(4, 4, 2), COSTS, "st_conf") == pytest.approx(0.04 + 0.16 + 0.2)
    # a skimming student: its 10 clips decoded at 4 ms, its 2 teacher clips completed at 10 - 4 = 6 ms each
    skim = ClipCosts(decode_s=0.01, teacher_s=0.1, student_s={"condi_sr": 0.02}, skim_decode_s={"condi_sr": 0.004})
    assert video_seconds(ClipCounts(10, 10, 2), skim, "condi_sr") == pytest.approx(
        10 * 0.004 + 2 * 0.006 + 10 * 0.02 + 2 * 0.1)
    assert video_seconds(ClipCounts(10, 0, 2), skim) == pytest.approx(10 * 0.01 + 2 * 0.1)  # teacher-only: full
    with pytest.raises(ValueError, match="oracle"):
        clip_counts("oracle", 3, selection.dense(teacher_rows([0, 0, 0])))


def test_timing_model_prices_seeking_where_a_seek_cost_was_measured():
    sought = ClipCosts(decode_s=0.01, teacher_s=0.1, student_s=COSTS.student_s, seek_s=0.03)
    rows = {(r.strategy, r.k): r for r in results(VIDEOS, KS, strategies_for(METHODS), costs=sought,
                                                  max_prob_student="condi_sr")}
    # Equidistant K = 3 on videos of 5, 3 and 2 clips: 3 + 3 + 2 clips reached by seeking, none streamed
    r = rows["equidistant", 3]
    assert (r.decoded_clips, r.sought_clips * 3, r.teacher_clips * 3) == pytest.approx((0, 8, 8))
    assert r.seconds == pytest.approx((8 * 0.03 + 8 * 0.1) / 3)
    assert rows["random", 1].sought_clips == pytest.approx(1)
    # the others still stream every clip
    assert rows["dense", None].sought_clips == 0 and rows["dense", None].decoded_clips * 3 == pytest.approx(10)
    assert rows["condi_sr", 1].seconds == pytest.approx((10 * 0.01 + 10 * 0.02 + 3 * 0.1) / 3)
    with pytest.raises(ValueError, match=r"no measured cost for clips reached by seeking \(seek plan\)"):
        video_seconds(ClipCounts(0, 0, 2, sought=2, plan="seek"), COSTS)


def test_samplers_rank_only_the_keyframe_candidates():
    # video a (5 clips): condi_sr z~ [0.2, 0.9, 0.1, 0.7, 0.3]; its candidates are clips 0, 2 and 4
    a = dataclasses.replace(VIDEOS[0], candidates=np.array([True, False, True, False, True]))
    assert select(a, "condi_sr", 1).teacher_clips.tolist() == [4]  # 0.3, the best of 0.2, 0.1, 0.3
    assert select(a, "condi_sr", 2).teacher_clips.tolist() == [4, 0]
    assert select(a, "dense", None).teacher_clips.tolist() == [0, 1, 2, 3, 4]  # the teacher alone: every clip
    split = select(a, "condi_sr", 2, k_student=1)  # condi_sr's class peaks 0.5, 0.9, 0.7 on 0, 2, 4: entropy
    assert split.student_clips.tolist() == [2] and split.teacher_clips.tolist() == [4]
    costs = ClipCosts(decode_s=0.01, teacher_s=0.1, student_s={"condi_sr": 0.02}, keyframe_s=0.004)
    r = evaluate_strategy([a], "condi_sr", 1, costs=costs)
    assert (r.decoded_clips, r.sought_clips, r.student_clips, r.teacher_clips) == (0, 3, 3, 1)
    assert r.seconds == pytest.approx(3 * 0.004 + 3 * 0.02 + 0.1)


def make_clips(n: int):
    """``n`` clips whose pixels equal their index, so a scorer can read which clip it is looking at."""
    for i in range(n):
        yield Clip(i, 0.5 * i, 0.5 * (i + 1), np.full((2, 2, 2, 3), i, np.uint8))


def counted(clips, tally: list[int]):
    for clip in clips:
        tally[0] += 1
        yield clip


@pytest.mark.parametrize("n", [2, 6])
@pytest.mark.parametrize("strategy,k,k_student", [
    *((s, k, 0) for s in ("dense", "equidistant", "random", "condi_sr") for k in (1, 3)), ("condi_sr", 3, 1),
    ("condi_sr", 4, 4),
])
def test_timing_model_counts_what_the_labelling_job_counts(strategy, k, k_student, n):
    confidence = np.array([0.3, 0.9, 0.1, 0.8, 0.5, 0.7])[:n]
    peaks = np.array([0.5, 0.6, 0.9, 0.4, 0.95, 0.7])[:n]
    probs = student_rows(list(peaks), [i % 3 for i in range(n)])
    scored = [0]

    def scorer(frames):
        index = frames[:, 0, 0, 0, 0].astype(int)
        scored[0] += len(index)
        return probs[index], confidence[index]

    decoded = [0]
    chosen = select_clips(counted(make_clips(n), decoded), strategy, k, k_student, scorer=scorer,
                          batch_size=4, rng=video_rng(0, "v"))
    v = VideoClips("v", 0, teacher_rows([0] * n), {"condi_sr": probs}, {"condi_sr": confidence})
    ours = select(v, strategy, k, k_student=k_student)
    counts = clip_counts(strategy, n, ours)
    # the labelling job: clips decoded, scored by the student, and sent to TeacherPredict (its teacher_clips)
    assert counts == ClipCounts(decoded[0], scored[0], len(chosen.teacher_clips))
    np.testing.assert_array_equal(np.sort(ours.teacher_clips), np.sort(chosen.teacher_clips))
    np.testing.assert_array_equal(np.sort(ours.student_clips), np.sort(chosen.student_clips))


# --------------------------------------------------------------------------------------------------
# ambiguity
# --------------------------------------------------------------------------------------------------
def test_clean_clips_match_by_time():
    # ground truth in 1 s segments: clean, ambiguous, clean; clips of 0.5 s and one of 2 s across all three
    truth = (np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]), np.array([False, True, False]))
    clean = clean_clips(np.array([0.0, 0.5, 1.0, 2.5, 0.5, 5.0]), np.array([0.5, 1.0, 1.5, 3.0, 2.5, 6.0]), *truth)
    np.testing.assert_array_equal(clean, [True, True, False, True, False, False])


def test_ambiguity_auroc_hand_computed():
    rows = {r.sampler: r for r in ambiguity_rows(VIDEOS, max_prob_student="condi_sr")}
    assert set(rows) == {"condi_sr", "bce_conf", "st_conf", "st_ent", "max_prob", "random"}
    # z per clip: a [0,1,0,1,0], b [1,1,0], c [1,0]: 5 positives, 5 negatives.
    # condi_sr z~: positives 0.9,0.7,0.1,0.2,0.8 vs negatives 0.2,0.1,0.3,0.9,0.3 -> pairs won (a tie counts
    # 1/2): 4.5 + 4 + 0.5 + 1.5 + 4 = 14.5 of 25
    assert rows["condi_sr"].teacher_correct_auroc == pytest.approx(14.5 / 25)
    assert rows["condi_sr"].clips == 10 and rows["condi_sr"].teacher_correct_share == pytest.approx(0.5)
    # clean clips known for a and b only: a [0,1,0,1,0], b [1,1,0]; condi_sr z~ positives 0.9,0.7,0.1,0.2
    # vs negatives 0.2,0.1,0.3,0.9 -> 3.5 + 3 + 0.5 + 1.5 = 8.5 of 16
    assert rows["condi_sr"].clean_auroc == pytest.approx(8.5 / 16)
    assert rows["st_ent"].score == "−entropy" and 0 <= rows["random"].teacher_correct_auroc <= 1
    # the known ambiguous clips (a 0, 2, 4; b 2) are all wrong for the teacher: no AUROC among them
    assert math.isnan(rows["condi_sr"].ambiguous_teacher_correct_auroc)
    no_truth = ambiguity_rows([VIDEOS[2]], max_prob_student="condi_sr")
    assert all(math.isnan(r.clean_auroc) and math.isnan(r.ambiguous_teacher_correct_auroc) for r in no_truth)


def test_ambiguous_clip_auroc_ranks_only_the_ambiguous_clips():
    # label 0; teacher right on clips 0, 2, 3; clips 1, 2, 3, 4 ambiguous. Among them z = [0, 1, 1, 0] and
    # condi_sr z~ = [0.5, 0.6, 0.2, 0.1]: positives 0.6 and 0.2 against negatives 0.5 and 0.1 win 2 + 1 of 4
    # pairs. The clean clip 0 (z~ 0.05, teacher right) would lower it if counted: it is not.
    v = video("d", 0, teacher_rows([0, 1, 0, 0, 2]), [0.5] * 5, [0] * 5, [0.5] * 5,
              dict.fromkeys(("condi_sr", "bce_conf", "st_conf"), [0.05, 0.5, 0.6, 0.2, 0.1]),
              clean=[True, False, False, False, False])
    row = next(r for r in ambiguity_rows([v]) if r.sampler == "condi_sr")
    assert row.ambiguous_teacher_correct_auroc == pytest.approx(3 / 4)
    # over all five clips: positives 0.05, 0.6, 0.2 against 0.5, 0.1: 0 + 2 + 1 of 6 pairs
    assert row.teacher_correct_auroc == pytest.approx(3 / 6)


# --------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------
def png_ok(data: bytes) -> bool:
    """PNG signature, a well-formed chunk sequence with valid CRCs ending in IEND."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    offset, kind = 8, b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind, body = data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        if zlib.crc32(kind + body) != crc:
            return False
        offset += 12 + length
    return kind == b"IEND" and offset == len(data)


def test_report_files_tables_plots_and_links(tmp_path):
    rows = results(VIDEOS, KS, strategies_for(METHODS), costs=COSTS, max_prob_student="condi_sr")
    sweep = ks_sweep(VIDEOS, KS, costs=COSTS)
    files = report.report_files(rows, sweep, ambiguity_rows(VIDEOS, max_prob_student="condi_sr"), ["setup line"])
    assert {"accuracy.csv", "accuracy.md", "timing.csv", "table_iv.md", "ks_sweep.csv", "table_v.md",
            "ambiguity.csv", "accuracy_vs_k.png", "accuracy_vs_time.png", "report.md"} == set(files)

    accuracy = list(csv.DictReader(io.StringIO(files["accuracy.csv"].decode())))
    assert list(accuracy[0]) == ["strategy", "k", "accuracy", "videos"]
    assert len(accuracy) == 8 * len(KS) + 1 and accuracy[-1]["k"] == "all"
    condi = {row["k"]: float(row["accuracy"]) for row in accuracy if row["strategy"] == "condi_sr"}
    assert condi == pytest.approx({"1": 2 / 3, "3": 1.0})

    table = files["accuracy.md"].decode().splitlines()
    assert table[0] == "| Strategy | K=1 | K=3 | Dense |"
    assert [line.split(" | ")[0] for line in table[2:]] == [
        "| Oracle", "| Random (mean)", "| Equidistant", "| MaxProb", "| BCE-Conf", "| ST-Ent", "| ST-Conf",
        "| ConDi-SR", "| Dense"]
    assert "| ConDi-SR | 66.67 | **100.00** | 66.67 |" in table  # best non-oracle at K=3 in bold
    assert "| ST-Conf | **100.00** | 66.67 | 66.67 |" in table

    timing = list(csv.DictReader(io.StringIO(files["timing.csv"].decode())))
    assert "oracle" not in {row["strategy"] for row in timing}
    dense = next(row for row in timing if row["strategy"] == "dense")
    assert float(dense["seconds_per_video"]) == pytest.approx(1.1 / 3)
    table_iv = files["table_iv.md"].decode()
    assert table_iv.splitlines()[0] == "| K | ConDi-SR | Equidistant | ST-Ent |"
    assert "| 1 | 200 ms (66.67) | 133 ms (33.33) | 233 ms (66.67) |" in table_iv
    assert "| All (Dense) | 367 ms (66.67) |" in table_iv
    assert "| 3 | 2 | 0.67 | 33.33 | 167 ms |" in files["table_v.md"].decode()

    for name in ("accuracy_vs_k.png", "accuracy_vs_time.png"):
        assert png_ok(files[name]), name
        (tmp_path / name).write_bytes(files[name])
        assert matplotlib.image.imread(tmp_path / name).ndim == 3
    text = files["report.md"].decode()
    assert "](accuracy_vs_k.png)" in text and "](accuracy_vs_time.png)" in text and "- setup line" in text
    assert files["accuracy.md"].decode().strip() in text


# --------------------------------------------------------------------------------------------------
# end to end: `raycondi evaluate` on real Ray, tiny random-init checkpoints over tiny shards
# --------------------------------------------------------------------------------------------------
CLIP_LEN, SIZE, CROP = 4, 20, 16


@pytest.fixture(scope="module")
def shards(tmp_path_factory, ray_runtime):
    from raycondi.datasets.shards import prepare
    from raycondi.datasets.synthetic import SynthConfig, generate_dataset
    from raycondi.models import CheckpointConfig, build_model, build_student, save_checkpoint
    from raycondi.video.decode import ClipSpec

    root = tmp_path_factory.mktemp("evaluate")
    generate_dataset(str(root / "videos"), SynthConfig(videos=8, seed=1, classes=3, fps=10, width=48, height=40,
                                                       clip_len=CLIP_LEN, min_seconds=0.8, max_seconds=2.0),
                     workers=1)
    prepare(str(root / "videos"), str(root / "clips"), clip=ClipSpec(clip_len=CLIP_LEN, size=SIZE))
    torch.manual_seed(0)
    common = dict(num_classes=3, clip_len=CLIP_LEN, crop_size=CROP, resize=SIZE)
    save_checkpoint(build_model("shufflenetv2_3d", 3, width=0.25), str(root / "teacher"),
                    CheckpointConfig("shufflenetv2_3d", model_kwargs={"width": 0.25}, **common))
    for method, frame_step in (("condi_sr", 2), ("st_ent", 1)):  # the ConDi-SR student skims every other frame
        student = build_student("shufflenetv2_3d", 3, width=0.25)
        torch.nn.init.normal_(student.confidence_head.weight, 0, 2.0)
        save_checkpoint(student, str(root / method), CheckpointConfig(
            "shufflenetv2_3d", student=True, model_kwargs={"width": 0.25}, frame_step=frame_step, **common))
    return root


@pytest.mark.slow
def test_evaluate_command_end_to_end(shards, capsys):
    from raycondi.datasets.shards import read_summary

    out = shards / "eval"
    code = main(["evaluate", "--clips", str(shards / "clips"), "--teacher", str(shards / "teacher"),
                 "--student", f"condi_sr={shards / 'condi_sr'}", "--student", f"st_ent={shards / 'st_ent'}",
                 "--k", "1,2", "--out", str(out), "--split", "test"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| Strategy | K=1 | K=2 | Dense |" in printed and "| ConDi-SR |" in printed

    summary = read_summary(str(shards / "clips"))
    clips = pq.read_table(out / "clip_outputs.parquet")
    assert clips.num_rows == summary.clips["test"]
    for name in ("teacher_probs", "condi_sr_probs", "st_ent_probs"):
        probs = np.asarray(clips[name].to_pylist())
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    accuracy = list(csv.DictReader(open(out / "accuracy.csv")))
    assert {(row["strategy"], row["k"]) for row in accuracy} == {
        *((s, k) for s in ("oracle", "random", "equidistant", "max_prob", "st_ent", "condi_sr") for k in ("1", "2")),
        ("dense", "all")}
    assert all(int(row["videos"]) == summary.videos["test"] for row in accuracy)
    ambiguity = {row["sampler"]: row for row in csv.DictReader(open(out / "ambiguity.csv"))}
    assert set(ambiguity) == {"condi_sr", "st_ent", "max_prob", "random"}
    assert ambiguity["condi_sr"]["clean_share"] != "nan"  # ground_truth.parquet found through dataset.json
    timing = list(csv.DictReader(open(out / "timing.csv")))
    assert all(float(row["seconds_per_video"]) > 0 for row in timing)
    assert list(csv.DictReader(open(out / "ks_sweep.csv")))[-1]["k_student"] == "2"
    for name in ("accuracy_vs_k.png", "accuracy_vs_time.png"):
        assert png_ok((out / name).read_bytes())
    assert os.path.exists(out / "report.md") and os.path.exists(out / "costs.json")
    costs = json.load(open(out / "costs.json"))
    assert set(costs["skim_decode_s"]) == {"condi_sr"} and costs["skim_decode_s"]["condi_sr"] > 0


@pytest.mark.slow
def test_a_checkpoint_of_another_resize_is_refused_before_any_model_runs(shards, capsys):
    from raycondi.models import build_model, save_checkpoint
    from raycondi.models.checkpoint import CheckpointConfig

    other = shards / "teacher_at_crop_size"  # as saved before checkpoints recorded their resize
    save_checkpoint(build_model("shufflenetv2_3d", 3, width=0.25), str(other), CheckpointConfig(
        "shufflenetv2_3d", 3, model_kwargs={"width": 0.25}, clip_len=CLIP_LEN, crop_size=CROP))
    code = main(["evaluate", "--clips", str(shards / "clips"), "--teacher", str(other), "--out", str(shards / "x")])
    assert code == 2
    assert f"{other}: resize {CROP} differs from the shards' --size {SIZE}" in capsys.readouterr().err
    assert not (shards / "x").exists()

    import shutil  # shards prepared before keyframe offsets were recorded: no keyframe candidates to evaluate
    old = shards / "old_clips"
    shutil.copytree(shards / "clips", old)
    for part in (old / "test").glob("*.parquet"):
        pq.write_table(pq.read_table(part).drop_columns(["keyframe_offset"]), part)
    code = main(["evaluate", "--clips", str(old), "--teacher", str(shards / "teacher"), "--out", str(shards / "y"),
                 "--candidates", "keyframes"])
    assert code == 2 and "the shards have no keyframe_offset column" in capsys.readouterr().err


def test_unusable_inputs_exit_2_naming_the_problem(tmp_path, capsys):
    base = ["evaluate", "--clips", str(tmp_path / "clips"), "--teacher", str(tmp_path / "t"), "--out", str(tmp_path)]
    assert main([*base, "--student", "condi_sr"]) == 2
    assert "expected METHOD=CHECKPOINT" in capsys.readouterr().err
    assert main([*base, "--student", "kd=x"]) == 2
    assert "unknown student method 'kd'" in capsys.readouterr().err
    assert main(base) == 2  # no shards there: stops before Ray or any model starts
    assert f"{tmp_path / 'clips'}: not clip shards" in capsys.readouterr().err
