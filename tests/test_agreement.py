"""What `raycondi evaluate` reports is what `raycondi label` delivers: the same videos and checkpoints give the
same pictures, the same clips, the same classes and the same probabilities, end to end on a real Ray.

The videos are 320x240 (not square), the shards are prepared at --size 40 and the models crop less than
that (the teacher 36, the student 32), the student skims (frame_step 2) and normalises with its own
statistics: every way the two paths could feed a model different pictures is exercised.
"""

from __future__ import annotations

import csv

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from raycondi.datasets.manifests import read_dataset
from raycondi.datasets.shards import iter_clip_batches, prepare
from raycondi.datasets.synthetic import SynthConfig, generate_dataset
from raycondi.evaluation import EvaluateConfig, evaluate
from raycondi.evaluation.tables import group_videos, select
from raycondi.models import CheckpointConfig, build_model, build_student, save_checkpoint
from raycondi.pipeline import LabelConfig, label_videos, list_videos
from raycondi.pipeline.label import check_models
from raycondi.pipeline.sink import output_files
from raycondi.pipeline.stages import ScoreSelectPredict
from raycondi.video.decode import ClipSpec, iter_clips

CLASSES = ("MoveLeft", "MoveRight", "MoveUp")
CLIP_LEN, SIZE, KEYINT = 8, 40, 24  # a keyframe every third clip


@pytest.fixture(scope="module")
def job(tmp_path_factory, ray_runtime):
    root = tmp_path_factory.mktemp("agreement")
    videos, clips = str(root / "videos"), str(root / "clips")
    generate_dataset(videos, SynthConfig(videos=12, seed=5, classes=3, fps=10, width=320, height=240,
                                         clip_len=CLIP_LEN, min_seconds=2.4, max_seconds=4.8, keyint=KEYINT),
                     workers=1)
    prepare(videos, clips, clip=ClipSpec(clip_len=CLIP_LEN, size=SIZE))
    torch.manual_seed(0)
    common = dict(num_classes=3, class_names=CLASSES, clip_len=CLIP_LEN, resize=SIZE)
    teacher = build_model("shufflenetv2_3d", 3, width=0.5)
    torch.nn.init.normal_(teacher.classifier[1].weight, 0, 100.0)  # make the class probabilities depend on the clip
    save_checkpoint(teacher, str(root / "teacher"),
                    CheckpointConfig("shufflenetv2_3d", model_kwargs={"width": 0.5}, crop_size=36, **common))
    student = build_student("shufflenetv2_3d", 3, width=0.25)
    torch.nn.init.normal_(student.confidence_head.weight, 0, 2.0)  # spread z~ so the ranking is not a tie
    torch.nn.init.normal_(student.class_head.weight, 0, 100.0)
    save_checkpoint(student, str(root / "student"), CheckpointConfig(
        "shufflenetv2_3d", student=True, model_kwargs={"width": 0.25}, crop_size=32, frame_step=2,
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), **common))
    models = {"teacher": str(root / "teacher"), "student": str(root / "student")}
    evaluate(EvaluateConfig(clips=clips, teacher=models["teacher"], students={"condi_sr": models["student"]},
                            out=str(root / "eval"), ks=(3,), decode_videos=1))
    labels = {}
    for name, options in {"dense": {"strategy": "dense"}, "condi_sr": {"k": 3, "k_student": 1}}.items():
        out = str(root / f"labels_{name}")
        label_videos(LabelConfig(videos, out, models["teacher"], models["student"], split="test", **options))
        table = pq.read_table(output_files(out, None))
        labels[name] = {row["video_id"]: row for row in table.to_pylist()}
    seeking = {"equidistant": {"strategy": "equidistant"}, "random": {"strategy": "random"},
               "keyframes": {"student": models["student"], "candidates": "keyframes", "keyframe_clips": 1}}
    for name, options in seeking.items():  # the stage in this process (the job is tested above)
        config = LabelConfig(videos, str(root / name), models["teacher"], k=3, split="test", **options)
        rows = ScoreSelectPredict(config, *check_models(config))(list_videos(videos, split="test")).to_pylist()
        labels[name] = {row["video_id"]: row for row in rows}
    clip_outputs = pq.read_table(str(root / "eval" / "clip_outputs.parquet"))
    evaluated = {v.video_id: v for v in group_videos(clip_outputs, ["condi_sr"])}
    return root, videos, clips, evaluated, labels


def _probs(row: dict) -> np.ndarray:
    """A label row's video probabilities by class index (top5 covers the 3 classes)."""
    return np.array([row["top5_scores"][row["top5_labels"].index(name)] for name in CLASSES])


def _accuracy(root, name: str, k: str, k_student: str = "0") -> float:
    file = "accuracy.csv" if k_student == "0" else "ks_sweep.csv"
    with open(root / "eval" / file) as f:
        rows = list(csv.DictReader(f))
    return next(float(r["accuracy"]) for r in rows
                if r["strategy"] == name and r["k"] == k and r.get("k_student", "0") == k_student)


def test_label_decodes_the_pictures_the_shards_hold(job):
    _, videos, clips, _, _ = job
    shards = {}
    for batch in iter_clip_batches(clips, "test", batch_size=256):
        for video_id, index, frames in zip(batch["video_id"], batch["clip_index"], batch["frames"], strict=True):
            shards[(video_id, int(index))] = frames
    dataset = read_dataset(videos)
    test = [row for row in dataset.to_pylist() if row["split"] == "test"]
    assert test and shards
    for row in test[:2]:
        decoded = list(iter_clips(row["uri"], CLIP_LEN, SIZE))  # label's decode at the checkpoints' resize
        assert len(decoded) == sum(1 for key in shards if key[0] == row["video_id"])
        for clip in decoded:
            assert clip.frames.shape == (CLIP_LEN, SIZE, SIZE, 3)
            np.testing.assert_array_equal(clip.frames, shards[(row["video_id"], clip.index)])


def test_dense_labels_are_evaluates_dense_row(job):
    root, _, _, evaluated, labels = job
    rows = labels["dense"]
    assert set(rows) == set(evaluated) and len(rows) >= 3
    for video_id, video in evaluated.items():
        row, expected = rows[video_id], select(video, "dense", None)
        assert row["status"] == "ok" and row["num_clips"] == video.num_clips
        assert row["label_index"] == expected.label and row["label"] == CLASSES[expected.label]
        np.testing.assert_allclose(_probs(row), expected.probs, atol=1e-4)
    correct = np.mean([row["label_index"] == evaluated[v].label for v, row in rows.items()])
    assert correct == pytest.approx(_accuracy(root, "dense", "all"))


def test_condi_sr_labels_are_evaluates_row_at_k3_with_one_student_clip(job):
    root, _, _, evaluated, labels = job
    rows = labels["condi_sr"]
    assert set(rows) == set(evaluated)
    for video_id, video in evaluated.items():
        row, expected = rows[video_id], select(video, "condi_sr", 3, k_student=1)
        assert row["selected_clips"] == [*expected.student_clips.tolist(), *expected.teacher_clips.tolist()]
        assert row["selected_by"] == ["student"] * len(expected.student_clips) + \
            ["teacher"] * len(expected.teacher_clips)
        np.testing.assert_allclose(row["clip_confidence"], video.confidence["condi_sr"], atol=1e-4)
        assert row["label_index"] == expected.label
        np.testing.assert_allclose(_probs(row), expected.probs, atol=1e-4)
    correct = np.mean([row["label_index"] == evaluated[v].label for v, row in rows.items()])
    assert correct == pytest.approx(_accuracy(root, "condi_sr", "3", "1"))


@pytest.mark.parametrize("strategy", ["equidistant", "random"])
def test_seeking_labels_are_evaluates_row(job, strategy):
    _, _, _, evaluated, labels = job
    rows = labels[strategy]
    assert set(rows) == set(evaluated)
    for video_id, video in evaluated.items():
        row, expected = rows[video_id], select(video, strategy, 3, seed=0)
        assert row["decode_mode"] == "seek" and row["decode_fallback"] is None
        assert row["selected_clips"] == expected.teacher_clips.tolist()
        assert row["label_index"] == expected.label
        np.testing.assert_allclose(_probs(row), expected.probs, atol=1e-4)


def test_keyframe_candidate_labels_are_evaluates_keyframe_selection(job):
    root, _, _, _, labels = job
    table = pq.read_table(str(root / "eval" / "clip_outputs.parquet"))
    candidates = {v.video_id: v for v in group_videos(table, ["condi_sr"], reach=CLIP_LEN)}  # keyframe_clips=1
    rows = labels["keyframes"]
    assert set(rows) == set(candidates)
    for video_id, video in candidates.items():
        row, expected = rows[video_id], select(video, "condi_sr", 3)
        assert row["decode_mode"] == "keyframes"
        assert row["candidate_clips"] == np.flatnonzero(video.candidates).tolist()
        assert all(c % (KEYINT // CLIP_LEN) == 0 for c in row["candidate_clips"])  # clips starting at a keyframe
        assert row["selected_clips"] == expected.teacher_clips.tolist()
        assert row["label_index"] == expected.label
        np.testing.assert_allclose(_probs(row), expected.probs, atol=1e-4)
