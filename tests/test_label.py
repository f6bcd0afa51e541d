"""Tests for raycondi.pipeline.label: the per-video logic without Ray, then the job on a real local Ray
with real video files, on the loopback S3 server and on local disk."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from raycondi import selection
from raycondi.cli import main
from raycondi.models import (
    CheckpointConfig,
    build_student,
    for_inference,
    load_checkpoint,
    model_input,
    save_checkpoint,
)
from raycondi.pipeline import (
    OUTPUT_COLUMNS,
    OUTPUT_SCHEMA,
    LabelConfig,
    LabelError,
    LabelSummary,
    columns_markdown,
    label_videos,
    labelled_ids,
    list_videos,
    select_clips,
    topk,
    video_prediction,
)
from raycondi.pipeline.label import check_models
from raycondi.pipeline.plan import plan_pools
from raycondi.pipeline.stages import ScoreSelectPredict
from raycondi.video.decode import Clip, iter_clips
from raycondi.video.storage import list_files, read_bytes, resolve
from tests.checkpoints import CLASSES, CLIP_LEN, CROP, save_models, synth
from tests.videos import gradient_frames, level_frames, level_index, write_audio_only, write_video


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def make_clips(n: int, created: list | None = None):
    """``n`` clips whose pixels are all equal to their index (so a clip's frames say which clip it is)."""
    for i in range(n):
        frames = np.full((CLIP_LEN, 2, 2, 3), i, np.uint8)
        if created is not None:
            created.append(weakref.ref(frames))
        yield Clip(i, i * 0.4, (i + 1) * 0.4, frames)


def fake_scorer(confidence: list[float], classes: int = 3):
    """A scorer reading the clip index off the pixels: its confidence from ``confidence``, its probabilities
    peaked on class ``index % classes`` more sharply for higher indices (entropy falls with the index)."""

    def score(frames: np.ndarray):
        index = frames[:, 0, 0, 0, 0].astype(int)
        probs = np.full((len(index), classes), 1.0)
        probs[np.arange(len(index)), index % classes] += index + 1.0
        return probs / probs.sum(1, keepdims=True), np.asarray(confidence, np.float32)[index]

    return score


def read_output(output: str) -> pa.Table:
    files = [f for f in list_files(output, (".parquet",)) if not os.path.basename(f).startswith((".", "_"))]
    filesystem, _ = resolve(output)
    return pa.concat_tables([pq.read_table(resolve(f)[1], filesystem=filesystem) for f in files])


def expected_selection(uri: str, teacher_dir: str, student_dir: str, config: LabelConfig) -> selection.Selection:
    """What the evaluation's selection rule says for one video, from per-clip outputs computed here."""
    (student, s_cfg), (teacher, t_cfg) = load_checkpoint(student_dir), load_checkpoint(teacher_dir)
    student, teacher = for_inference(student), for_inference(teacher)  # the pipeline's layout and batches: same numerics
    frames = np.stack([c.frames for c in iter_clips(uri, s_cfg.clip_len, s_cfg.resize)])
    probs, conf, teacher_probs = [], [], []
    with torch.inference_mode():
        for i in range(0, len(frames), config.student_batch_size):
            logits, z = student(model_input(frames[i:i + config.student_batch_size], s_cfg))  # every frame_step-th
            probs.append(logits.softmax(1).numpy())
            conf.append(z.sigmoid().numpy())
        teacher_probs = teacher(model_input(frames, t_cfg)).softmax(1).numpy()
    return selection.split_k(teacher_probs, np.concatenate(probs), np.concatenate(conf), config.k, config.k_student)


def check_consistent(row: dict, config: LabelConfig) -> None:
    expected = expected_selection(row["uri"], config.teacher, config.student, config)
    assert row["selected_clips"] == [*expected.student_clips.tolist(), *expected.teacher_clips.tolist()]
    assert row["selected_by"] == ["student"] * len(expected.student_clips) + ["teacher"] * len(expected.teacher_clips)
    assert row["teacher_clips"] == len(expected.teacher_clips)
    assert row["label_index"] == expected.label
    assert row["label"] == CLASSES[expected.label]
    assert row["score"] == pytest.approx(expected.probs[expected.label], abs=1e-5)


# --------------------------------------------------------------------------------------------------
# per-video logic
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 3, 16])
@pytest.mark.parametrize("k, k_student", [(3, 0), (3, 1), (4, 4), (12, 2)])
def test_select_clips_condi_is_the_selection_rule(batch_size, k, k_student):
    # ties at 0.5 (clips 2, 5, 8) are broken by the lower index, as selection.top_k does
    confidence = [0.1, 0.9, 0.5, 0.3, 0.95, 0.5, 0.2, 0.7, 0.5, 0.6]
    scorer = fake_scorer(confidence)
    chosen = select_clips(make_clips(10), "condi_sr", k, k_student, scorer=scorer, batch_size=batch_size)
    student_probs, _ = scorer(np.stack([c.frames for c in make_clips(10)]))
    want_student, want_teacher = selection.split_indices(
        selection.predictive_entropy(student_probs), confidence, k, k_student
    )
    np.testing.assert_array_equal(chosen.student_clips, want_student)
    np.testing.assert_array_equal(chosen.teacher_clips, want_teacher)
    np.testing.assert_allclose(chosen.student_probs, student_probs[want_student], rtol=1e-6)
    assert [int(f[0, 0, 0, 0]) for f in chosen.teacher_frames] == want_teacher.tolist()
    np.testing.assert_allclose(chosen.confidence, confidence, rtol=1e-6)
    assert chosen.num_clips == 10 and chosen.duration_s == pytest.approx(4.0)


def test_select_clips_condi_hand_computed():
    # "condi", the name label used before the strategy table, still means condi_sr
    chosen = select_clips(make_clips(5), "condi", 2, scorer=fake_scorer([0.2, 0.8, 0.8, 0.1, 0.9]), batch_size=2)
    assert chosen.teacher_clips.tolist() == [4, 1]  # 0.9, then 0.8 at index 1 before 0.8 at index 2
    assert chosen.student_clips.tolist() == []


@pytest.mark.parametrize("strategy, expected", [
    # fake_scorer's probabilities peak on class index % 3 by index + 1: entropy falls and max prob rises with
    # the index, so both rank the last clips first; bce_conf and st_conf rank by z~ as condi_sr does
    ("st_ent", [4, 3]), ("max_prob", [4, 3]), ("bce_conf", [4, 1]), ("st_conf", [4, 1]),
])
def test_select_clips_ranks_by_the_strategy_tables_score(strategy, expected):
    chosen = select_clips(make_clips(5), strategy, 2, scorer=fake_scorer([0.2, 0.8, 0.8, 0.1, 0.9]), batch_size=2)
    assert chosen.teacher_clips.tolist() == expected
    assert [int(f[0, 0, 0, 0]) for f in chosen.teacher_frames] == expected
    with pytest.raises(ValueError, match="only condi_sr splits"):
        select_clips(make_clips(5), strategy, 2, 1, scorer=fake_scorer([0.2, 0.8, 0.8, 0.1, 0.9]))


def test_select_clips_on_skim_clips_scores_the_skim_and_keeps_whole_clips(tmp_path, monkeypatch):
    """Skim clips (every 2nd frame converted): the student sees frames 0 and 2 of each clip, the teacher gets
    the K chosen clips whole, and past ``_PENDING_BYTES`` of held pictures a batch is scored early."""
    path = str(write_video(tmp_path / "levels.mp4", level_frames(24, 64, 48)))  # 6 clips of 4 frames
    monkeypatch.setattr(topk, "PENDING_BYTES", 1)  # every clip's pictures pass it: batches of one
    seen, batches = [], []

    def scorer(frames):  # confidence from the first frame's index, permuted so the best clips are not the last
        batches.append(len(frames))
        seen.extend([level_index(f.mean()) for f in clip] for clip in frames)
        first = np.array([level_index(clip[0].mean()) for clip in frames])
        return np.full((len(frames), 3), 1 / 3), ((first // 4 * 5) % 6 / 6).astype(np.float32)

    chosen = select_clips(iter_clips(path, CLIP_LEN, CROP, skim_step=2), "condi_sr", 2, scorer=scorer, batch_size=16)
    assert batches == [1] * 6
    assert seen == [[4 * i, 4 * i + 2] for i in range(6)]
    # confidences of clips 0..5 (first frames 0, 4, ..., 20): (0, 5, 10, 15, 20, 25) % 6 / 6 = 0, 5/6, 4/6, ...
    assert chosen.teacher_clips.tolist() == [1, 2]
    plain = list(iter_clips(path, CLIP_LEN, CROP))
    np.testing.assert_array_equal(chosen.teacher_frames, np.stack([plain[1].frames, plain[2].frames]))


def test_select_clips_holds_k_clips_not_n():
    created: list = []
    most_alive = 0

    def scorer(frames):
        nonlocal most_alive
        most_alive = max(most_alive, sum(r() is not None for r in created))
        return fake_scorer(list(np.linspace(0, 1, 200)))(frames)

    select_clips(make_clips(200, created), "condi_sr", 5, scorer=scorer, batch_size=4)
    assert most_alive <= 5 + 4 + 1  # heap + pending batch + the clip being assembled, not 200


@pytest.mark.parametrize(
    "strategy, k, expected",
    [("dense", 3, list(range(10))), ("equidistant", 3, [1, 5, 8]), ("random", 3, None), ("equidistant", 20, list(range(10)))],
)
def test_select_clips_teacher_only_strategies(strategy, k, expected):
    chosen = select_clips(make_clips(10), strategy, k, rng=np.random.default_rng(7))
    if expected is None:
        expected = selection.random_indices(10, k, np.random.default_rng(7)).tolist()
    assert chosen.teacher_clips.tolist() == expected
    assert [int(f[0, 0, 0, 0]) for f in chosen.teacher_frames] == expected
    assert chosen.confidence.size == 0 and chosen.student_clips.size == 0


@pytest.mark.parametrize("student_step, teacher_step", [(2, 1), (1, 2)])
def test_each_model_sees_every_frame_step_th_frame(tmp_path, student_step, teacher_step):
    """A frame_step=2 student: the job decodes skim clips, yet its selection and labels are those computed
    here from plain decodes (the student on frames[::2], the teacher on whole clips). A frame_step=2
    teacher sees frames[::2] of its clips."""
    synth(str(tmp_path / "videos"), 3)
    teacher, student = save_models(str(tmp_path / "models"), frame_step=student_step, teacher_frame_step=teacher_step)
    config = LabelConfig(str(tmp_path / "videos"), str(tmp_path / "out"), teacher, student, k=2, k_student=1,
                         student_batch_size=3)
    clip, models = check_models(config)
    stage = ScoreSelectPredict(config, clip, models)
    assert stage.score_and_select.skim_step == student_step
    rows = stage(list_videos(config.input)).to_pylist()
    assert len(rows) == 3 and all(r["status"] == "ok" and r["teacher_clips"] == 1 for r in rows)
    for row in rows:
        check_consistent(row, config)


@pytest.mark.parametrize("strategy", ["equidistant", "random"])
def test_teacher_only_strategies_seek_to_the_clips_a_full_decode_gives(tmp_path, strategy):
    synth(str(tmp_path / "videos"), 3, min_seconds=4.0, max_seconds=4.8)
    teacher, _ = save_models(str(tmp_path / "models"))
    rows = {}
    for seek in (True, False):
        config = LabelConfig(str(tmp_path / "videos"), str(tmp_path / "out"), teacher, strategy=strategy, k=2,
                             seek=seek, seed=4)
        stage = ScoreSelectPredict(config, *check_models(config))
        rows[seek] = stage(list_videos(config.input)).to_pylist()
    for sought, full in zip(rows[True], rows[False], strict=True):
        assert sought["decode_mode"] == "seek" and full["decode_mode"] == "full"
        assert sought["decode_fallback"] is None and full["decode_fallback"] is None
        for column in ("selected_clips", "selected_start_s", "selected_end_s", "num_clips", "label_index",
                       "top5_scores"):
            assert sought[column] == full[column], column
        assert sought["duration_s"] == pytest.approx(full["duration_s"])
        assert 0 < sought["frames_decoded"] < full["frames_decoded"]  # 2 clips of 4 frames and their references
        assert 0 < sought["bytes_read"] <= full["bytes_read"]


def test_keyframe_candidates_and_the_fallback_are_in_the_row(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    options = {"preset": "veryfast", "x264-params": "keyint=12:min-keyint=12:scenecut=0"}
    write_video(videos / "long_gop.mp4", gradient_frames(60, 64, 48), options=options)
    write_video(videos / "vfr.mp4", level_frames(8, 64, 48), times=[0.0, 0.04, 0.1, 0.3, 0.31, 0.5, 0.9, 1.0])
    teacher, student = save_models(str(tmp_path / "models"))
    config = LabelConfig(str(videos), str(tmp_path / "out"), teacher, student, k=2, candidates="keyframes",
                         keyframe_clips=1)
    rows = {r["video_id"]: r for r in ScoreSelectPredict(config, *check_models(config))(list_videos(str(videos)))
            .to_pylist()}
    gop = rows["long_gop"]
    # 15 clips of 4 frames, keyframes at 0, 12, 24, 36, 48: the clips starting fewer than 4 frames after one
    # are clips 0, 3, 6, 9 and 12, each scored; K = 2 of them to the teacher
    assert gop["decode_mode"] == "keyframes" and gop["num_clips"] == 15
    assert gop["candidate_clips"] == [0, 3, 6, 9, 12] and len(gop["clip_confidence"]) == 5
    assert set(gop["selected_clips"]) <= {0, 3, 6, 9, 12} and gop["teacher_clips"] == 2
    assert [round(s * 25) for s in gop["selected_start_s"]] == [4 * c for c in gop["selected_clips"]]
    assert gop["frames_decoded"] < 60
    vfr = rows["vfr"]
    assert vfr["status"] == "ok" and vfr["decode_mode"] == "full" and vfr["candidate_clips"] is None
    assert vfr["decode_fallback"].startswith("variable frame rate")


def test_video_prediction_hand_computed():
    teacher = np.array([[0.6, 0.4, 0.0], [0.2, 0.8, 0.0]])
    student = np.array([[0.0, 0.0, 1.0]])
    out = video_prediction(teacher, student, class_names=CLASSES)
    # mean of the three vectors: [0.8, 1.2, 1.0] / 3
    assert out["label_index"] == 1 and out["label"] == "MoveRight"
    assert out["score"] == pytest.approx(0.4)
    assert out["top5_labels"] == ["MoveRight", "RotateCW", "MoveLeft"]
    assert out["top5_scores"] == pytest.approx([0.4, 1 / 3, 0.8 / 3])
    # confidence weighting inside the teacher group: (2 * (0.9 t1 + 0.1 t2) + s) / 3 = [1.12, 0.88, 1] / 3
    weighted = video_prediction(teacher, student, np.array([0.9, 0.1]))
    assert weighted["label_index"] == 0 and weighted["label"] == "0"
    assert weighted["score"] == pytest.approx(1.12 / 3)


def test_label_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="k_student must be between 0 and k=2"):
        LabelConfig("in", "out", "t", "s", k=2, k_student=3)
    with pytest.raises(ValueError, match="strategy must be one of"):
        LabelConfig("in", "out", "t", "s", strategy="oracle")
    with pytest.raises(ValueError, match="needs a student checkpoint"):
        LabelConfig("in", "out", "t")
    LabelConfig("in", "out", "t", strategy="dense")  # the teacher-only strategies need no student
    assert LabelConfig("in", "out", "t", "s", strategy="condi").strategy == "condi_sr"
    with pytest.raises(ValueError, match="k_student needs strategy='condi_sr'"):
        LabelConfig("in", "out", "t", "s", strategy="st_ent", k=3, k_student=1)
    with pytest.raises(ValueError, match="weighting='confidence' needs a strategy ranking clips by z~"):
        LabelConfig("in", "out", "t", "s", strategy="st_ent", weighting="confidence")
    with pytest.raises(ValueError, match="stages must be one of"):
        LabelConfig("in", "out", "t", "s", stages="pipelined")
    with pytest.raises(ValueError, match="stages='fused' runs both models on CPU"):
        LabelConfig("in", "out", "t", "s", stages="fused", teacher_gpus=1.0)
    with pytest.raises(ValueError, match="stages='gpu' runs a sampler's student .* 'dense' runs no student"):
        LabelConfig("in", "out", "t", stages="gpu", strategy="dense")
    with pytest.raises(ValueError, match="student_gpus is for stages='split'"):
        LabelConfig("in", "out", "t", "s", stages="gpu", student_gpus=0.5)
    with pytest.raises(ValueError, match="inference: inference setting 'fp16': expected fp32 or bf16 first"):
        LabelConfig("in", "out", "t", "s", inference="fp16")
    with pytest.raises(ValueError, match="decoder must be one of pyav, nvdec, auto"):
        LabelConfig("in", "out", "t", "s", decoder="cuvid")


CPU_NODE, GPU_NODE = {"CPU": 16.0, "memory": 6.4e10}, {"CPU": 8.0, "GPU": 2.0}


@pytest.mark.parametrize("nodes, options, videos, expected", [
    # no GPU anywhere: both stages fused, one actor per CPU, never more actors than videos
    ([{"CPU": 2.0}], {}, 30, ("fused", 2, 0, 0.0)),
    ([{"CPU": 2.0}], {}, 1, ("fused", 1, 0, 0.0)),
    ([{"memory": 1e9}, {"CPU": 3.0}], {}, 30, ("fused", 3, 0, 0.0)),  # a head with --num-cpus 0 is not a node
    ([CPU_NODE, CPU_NODE], {"cpus_per_actor": 4.0}, 100, ("fused", 8, 0, 0.0)),
    # a CPU-only cluster can still be split, or run the GPU layout's classes on CPU
    ([{"CPU": 4.0}], {"stages": "split"}, 30, ("split", 3, 1, 0.0)),
    ([{"CPU": 4.0}], {"stages": "gpu"}, 30, ("gpu", 3, 1, 0.0)),
    # GPUs: a sampler takes the GPU layout, one GPU actor per GPU; decode actors on the CPU nodes' 32 CPUs and
    # the 16 - 4 the GPU nodes leave
    ([CPU_NODE, CPU_NODE, GPU_NODE, GPU_NODE], {}, 1000, ("gpu", 44, 4, 1.0)),
    ([GPU_NODE], {}, 1000, ("gpu", 6, 2, 1.0)),  # a single GPU machine
    ([GPU_NODE], {"teacher_gpus": 0.5}, 1000, ("gpu", 4, 4, 0.5)),
    ([GPU_NODE], {"teacher_gpus": 0.0}, 1000, ("fused", 8, 0, 0.0)),  # GPUs left alone: as a CPU cluster
    # the teacher-only strategies, and students with GPUs of their own, split
    ([GPU_NODE], {"strategy": "dense"}, 1000, ("split", 6, 2, 1.0)),
    ([GPU_NODE], {"student_gpus": 0.5, "teacher_gpus": 1.0, "teacher_actors": 1}, 1000, ("split", 2, 1, 1.0)),
    ([CPU_NODE, GPU_NODE], {"student_actors": 3, "teacher_actors": 1}, 1000, ("gpu", 3, 1, 1.0)),
    ([CPU_NODE, GPU_NODE], {}, 1, ("gpu", 1, 1, 1.0)),
    # NVDEC: decode actors on the GPU nodes only, sharing the half of each GPU the GPU actors leave
    ([CPU_NODE, GPU_NODE], {"decoder": "nvdec"}, 1000, ("gpu", 6, 2, 0.5)),
    ([{"CPU": 16.0, "GPU": 1.0}], {"decoder": "auto"}, 1000, ("gpu", 15, 1, 0.5)),
])
def test_plan_pools_sizes_the_actors_from_the_cluster(nodes, options, videos, expected):
    plan = plan_pools(LabelConfig("in", "out", "t", "s", **options), nodes, videos)
    assert (plan.stages, plan.student_actors, plan.teacher_actors, plan.teacher_gpus) == expected
    described = plan.describe()
    assert f"{videos} video(s)" in described and f"{sum(n.get('GPU', 0) for n in nodes):g} GPUs" in described
    assert ("ScoreSelectPredict" in described) == (plan.stages != "split")
    assert ("GPUScoreSelectPredict" in described) == (plan.stages == "gpu")
    nvdec = options.get("decoder") in ("nvdec", "auto")
    assert plan.decoder == ("nvdec" if nvdec else "pyav") and ("decoder nvdec" in described) == nvdec
    if nvdec:  # the decode actors' shares and the GPU actors' fill the GPUs exactly
        total = plan.teacher_actors * plan.teacher_gpus + plan.student_actors * plan.student_gpus
        assert total == pytest.approx(sum(n.get("GPU", 0) for n in nodes), abs=1e-3)


def test_output_columns_cover_the_issue_and_the_readme_table():
    required = {"video_id", "uri", "status", "error", "label", "label_index", "score", "top5_labels", "top5_scores",
                "num_clips", "duration_s", "selected_clips", "selected_start_s", "selected_end_s",
                "selected_confidence", "selected_by", "teacher_model", "student_model", "k", "k_student",
                "decode_s", "student_s", "teacher_s"}
    assert required <= set(OUTPUT_SCHEMA.names)
    table = columns_markdown()
    assert all(f"| `{name}` |" in table for name, _, _ in OUTPUT_COLUMNS)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert table in readme


def test_list_videos_prefix_and_manifest(tmp_path):
    for name in ("b/clip.MP4", "a.webm", "notes.txt", "c/d/e.avi"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    videos = list_videos(str(tmp_path))
    assert videos["video_id"].to_pylist() == ["a", "b/clip", "c/d/e"]
    assert videos["uri"].to_pylist() == [str(tmp_path / n) for n in ("a.webm", "b/clip.MP4", "c/d/e.avi")]
    manifest = tmp_path / "list.csv"
    manifest.write_text("uri,label\nb/clip.MP4,x\nmissing.mp4,y\n")
    assert list_videos(str(manifest))["video_id"].to_pylist() == ["b/clip", "missing"]  # missing: an error row later
    with pytest.raises(LabelError, match="no video found"):
        list_videos(str(tmp_path / "notes.txt"))  # a file that is not a video
    with pytest.raises(LabelError, match="cannot list the input prefix"):
        list_videos(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("field, value, message", [
    ("resize", 40, "resize 40 differs from the teacher's 32"),
    ("clip_len", 8, "clip_len 8 differs from the teacher's 4"),
])
def test_a_student_decoded_otherwise_than_the_teacher_is_refused(tmp_path, field, value, message):
    teacher, _ = save_models(str(tmp_path / "models"))
    student = build_student("shufflenetv2_3d", len(CLASSES), width=0.25)
    config = CheckpointConfig("shufflenetv2_3d", student=True, model_kwargs={"width": 0.25}, num_classes=len(CLASSES),
                              class_names=CLASSES, **{"clip_len": CLIP_LEN, "crop_size": CROP, field: value})
    save_checkpoint(student, str(tmp_path / "other"), config)
    with pytest.raises(LabelError, match=rf"{tmp_path / 'other'}: {message} .*one decode serves both models"):
        check_models(LabelConfig("in", "out", teacher, str(tmp_path / "other")))
    # crop, frame step and normalisation may differ: each model is served its own
    served = CheckpointConfig("shufflenetv2_3d", student=True, model_kwargs={"width": 0.25}, num_classes=len(CLASSES),
                              class_names=CLASSES, clip_len=CLIP_LEN, crop_size=CROP - 4, resize=CROP, frame_step=2,
                              mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    save_checkpoint(student, str(tmp_path / "served"), served)
    clip, _ = check_models(LabelConfig("in", "out", teacher, str(tmp_path / "served")))
    assert (clip.clip_len, clip.size) == (CLIP_LEN, CROP)


def test_unusable_inputs_exit_non_zero_naming_the_uri(tmp_path, capsys):
    teacher, student = save_models(str(tmp_path / "models"))
    code = main(["label", "--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out"),
                 "--teacher", teacher, "--student", student])
    assert code == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err
    code = main(["label", "--input", str(tmp_path), "--output", str(tmp_path / "out"),
                 "--teacher", student, "--student", student])
    assert code == 2
    assert "two-headed student checkpoint; --teacher needs a plain classifier" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# the job on Ray
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3_job(s3_server, ray_runtime):
    """30 synthetic videos and the two checkpoints on the loopback S3 server, labelled once with the stages
    split as on a GPU cluster: the K clips go from ScoreAndSelect to TeacherPredict through the object store."""
    root = s3_server.uri("label")
    synth(f"{root}/videos", 30)
    teacher, student = save_models(f"{root}/models")
    config = LabelConfig(f"{root}/videos", f"{root}/out", teacher, student, k=3, student_batch_size=4,
                         videos_per_teacher_call=4, rows_per_file=8, stages="split")
    return config, label_videos(config)


@pytest.mark.slow
def test_labels_30_s3_videos_into_parquet_on_s3(s3_job):
    config, summary = s3_job
    table = read_output(config.output)
    assert table.schema.equals(OUTPUT_SCHEMA)
    assert table.num_rows == 30 and len(set(table["video_id"].to_pylist())) == 30
    rows = table.to_pylist()
    assert all(r["status"] == "ok" and r["error"] is None for r in rows)
    assert all(r["uri"].startswith("s3://") and r["teacher_model"] == config.teacher for r in rows)
    # exactly K clips per video reached the teacher (N when N < K), counted inside TeacherPredict
    assert any(r["num_clips"] < 3 for r in rows) and any(r["num_clips"] > 3 for r in rows)
    assert all(r["teacher_clips"] == min(3, r["num_clips"]) for r in rows)
    assert all(len(r["clip_confidence"]) == r["num_clips"] for r in rows)
    assert summary.videos_ok == 30 and summary.videos_error == 0
    assert summary.clips_to_teacher == sum(r["teacher_clips"] for r in rows)
    assert summary.clips_scored == summary.dense_clips == sum(r["num_clips"] for r in rows)
    assert summary.teacher_share == pytest.approx(summary.clips_to_teacher / summary.dense_clips)
    written = json.loads(read_bytes(f"{config.output}/_summary.json"))
    assert written["videos_ok"] == 30 and written["run_id"] == summary.run_id
    for row in rows[::6]:  # the selection rule computed independently here, on 5 of the videos
        check_consistent(row, config)


@pytest.mark.slow
def test_rerun_labels_only_missing_videos(s3_job, s3_server):
    config, first = s3_job
    files = [f for f in list_files(config.output, (".parquet",)) if "/_" not in f]
    assert len(files) >= 2
    removed = pq.read_table(resolve(files[0])[1], filesystem=resolve(files[0])[0])["video_id"].to_pylist()
    s3_server.client().delete_object(Bucket=s3_server.bucket, Key=resolve(files[0])[1].split("/", 1)[1])
    assert labelled_ids(config.output) == {r for r in read_output(config.output)["video_id"].to_pylist()}

    second = label_videos(config)
    assert second.videos_already_labelled == 30 - len(removed)
    assert second.videos_labelled == len(removed)
    table = read_output(config.output)
    new = table.filter(pa.compute.equal(table["run_id"], second.run_id))
    assert sorted(new["video_id"].to_pylist()) == sorted(removed)
    assert table.num_rows == 30 and len(set(table["video_id"].to_pylist())) == 30

    third = label_videos(config)  # nothing left: no new rows, still a success
    assert third.videos_labelled == 0 and read_output(config.output).num_rows == 30


@pytest.mark.slow
def test_bad_inputs_give_one_error_row_each(tmp_path, ray_runtime, capsys, caplog):
    caplog.set_level(logging.INFO, logger="raycondi.label")
    videos = tmp_path / "videos"
    synth(str(videos / "good"), 3)
    (videos / "bad").mkdir()
    (videos / "bad" / "empty.mp4").write_bytes(b"")
    (videos / "bad" / "text.mp4").write_text("this is not a video\n" * 50)
    good = write_video(tmp_path / "long.mp4", gradient_frames(100, 64, 48), fps=10)
    (videos / "bad" / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    write_audio_only(videos / "bad" / "audio.mp4", seconds=1.0)
    teacher, student = save_models(str(tmp_path / "models"))
    out = tmp_path / "out"

    # through the CLI: some videos labelled, so exit 0 although four failed
    assert main(["label", "--input", str(videos), "--output", str(out), "--teacher", teacher, "--student", student,
                 "--k", "3", "--k-student", "1", "--student-batch-size", "4"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = {r["video_id"]: r for r in read_output(str(out)).to_pylist()}
    assert len(rows) == 7 and summary["videos_ok"] == 3 and summary["videos_error"] == 4
    # no GPU: both stages in one actor per CPU (the test runtime has 2), as logged
    assert summary["plan"].startswith("2 ScoreSelectPredict actor(s) x 1 CPU (stages fused)")
    assert f"labelling 7 video(s) with {summary['plan']}" in caplog.messages
    reasons = {v: rows[f"bad/{v}"]["error"] for v in ("empty", "text", "truncated", "audio")}
    assert all(rows[f"bad/{v}"]["status"] == "error" and rows[f"bad/{v}"]["label"] is None for v in reasons)
    assert all(reasons.values()) and "no video stream" in reasons["audio"]
    config = LabelConfig(str(videos), str(out), teacher, student, k=3, k_student=1, student_batch_size=4)
    for row in rows.values():
        if row["status"] == "ok":  # Fig. 2c: one clip by the student, K_t = 2 by the teacher
            assert row["selected_by"][0] == "student" and row["teacher_clips"] == min(2, row["num_clips"] - 1)
            check_consistent(row, config)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_gpu_layout_on_cpu_labels_as_the_evaluation_counts(tmp_path, ray_runtime, capsys, caplog):
    """``--stages gpu`` on a CPU-only Ray (as CI runs it): DecodeClips actors, then the GPU stage's class with
    both models on the CPU; the rows are the evaluation's selection, the bad file one error row."""
    caplog.set_level(logging.INFO, logger="raycondi.label")
    videos = tmp_path / "videos"
    synth(str(videos / "good"), 3)
    (videos / "bad.mp4").write_text("this is not a video\n" * 50)
    teacher, student = save_models(str(tmp_path / "models"))
    out = tmp_path / "out"
    assert main(["label", "--input", str(videos), "--output", str(out), "--teacher", teacher, "--student", student,
                 "--k", "3", "--k-student", "1", "--student-batch-size", "4", "--stages", "gpu",
                 "--inference", "fp32", "--report"]) == 0
    printed = capsys.readouterr()
    summary = json.loads(printed.out[:printed.out.rindex("}") + 1])
    # the terminal: the failed video once, with its reason; the report's path; Ray's lines only in the log file
    assert "raycondi label: 1 video(s) failed; their rows' error column says why:\n  1 x not a readable media " \
           "file" in printed.err and f": bad ({videos / 'bad.mp4'})" in printed.err
    assert printed.out.endswith(f"the labels' report: {out / '_report' / 'index.html'}\n")
    assert "bad" in (out / "_report" / "index.html").read_text()
    (log,) = (out / "_logs").glob("label-*.log")
    assert "Execution plan of Dataset" in log.read_text() and "Execution plan" not in printed.err
    assert f"raycondi: Ray's log lines are in {log}" in printed.err
    assert summary["plan"].startswith("1 DecodeClips actor(s) x 1 CPU, 1 GPUScoreSelectPredict actor(s) x 1 CPU;")
    assert f"labelling 4 video(s) with {summary['plan']}" in caplog.messages
    rows = {r["video_id"]: r for r in read_output(str(out)).to_pylist()}
    assert len(rows) == 4 and summary["videos_ok"] == 3 and rows["bad"]["status"] == "error"
    config = LabelConfig(str(videos), str(out), teacher, student, k=3, k_student=1, student_batch_size=4)
    for row in rows.values():
        if row["status"] == "ok":
            assert row["decoder"] == "pyav" and row["student_s"] > 0
            check_consistent(row, config)


def test_summary_says_when_nothing_could_be_labelled():
    base = dict(run_id="r", input="i", output="o", strategy="condi", k=5, k_student=0, videos_in_input=4,
                clips_scored=0, clips_to_teacher=0, dense_clips=0, teacher_share=None, seconds=1.0,
                videos_per_second=None)
    assert LabelSummary(**base, videos_already_labelled=0, videos_labelled=4, videos_ok=0, videos_error=4).nothing_labelled
    assert not LabelSummary(**base, videos_already_labelled=0, videos_labelled=4, videos_ok=1,
                            videos_error=3).nothing_labelled
    assert not LabelSummary(**base, videos_already_labelled=4, videos_labelled=0, videos_ok=0,
                            videos_error=0).nothing_labelled  # a rerun with nothing left to do


@pytest.mark.slow
@pytest.mark.parametrize("stages, actor_class", [("split", "ScoreAndSelect"), ("fused", "ScoreSelectPredict")])
def test_killed_score_and_select_actor_is_replaced(tmp_path, ray_runtime, stages, actor_class):
    import ray

    videos = tmp_path / "videos"
    synth(str(videos), 12, min_seconds=90.0, max_seconds=90.0)  # the job must still be running 2 s in
    teacher, student = save_models(str(tmp_path / "models"))
    config = LabelConfig(str(videos), str(tmp_path / "out"), teacher, student, k=3, student_batch_size=4,
                         stages=stages, student_actors=1, teacher_actors=1, rows_per_file=4)
    result: dict = {}
    job = threading.Thread(target=lambda: result.update(summary=label_videos(config)))
    job.start()

    def score_actors():
        # the GCS actor table: ray.util.state needs the dashboard, which the test runtime does not start
        return [a for a in ray._private.state.actors().values()
                if actor_class in a["ActorClassName"] and a["State"] == "ALIVE"]

    deadline = time.time() + 120
    while not score_actors() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(2.0)  # into the videos, far from the end
    victim = score_actors()[0]
    assert job.is_alive()
    os.kill(victim["Pid"], 9)
    job.join(timeout=300)

    assert not job.is_alive() and "summary" in result
    actor = ray._private.state.actors()[victim["ActorID"]]
    assert actor["NumRestarts"] >= 1 or actor["State"] == "DEAD"  # restarted in place or replaced
    ids = read_output(config.output)["video_id"].to_pylist()
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 12
    assert result["summary"].videos_ok == 12
