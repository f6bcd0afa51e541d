"""The throughput benchmarks in CI size: they run on CPU, print their table and write JSON with every row.

Smoke runs, not timing assertions: the figures are checked for being measured (positive, finite, counted),
never against a speed."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture
def benchmarks(monkeypatch):
    """Imports a script of benchmarks/ as a module (importable by name, so its worker processes find it)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module


def test_model_throughput_smoke(tmp_path, capsys, benchmarks):
    out = tmp_path / "models.json"
    models = ("student:shufflenetv2_3d:0.25", "teacher:resnext3d:50", "student:shufflenetv2_3d:width=0.25,frame_step=2")
    record = benchmarks("model_throughput").main([
        "--models", *models, "--classes", "5", "--clip", "4x32x32",
        "--batch-sizes", "1", "2", "--dtypes", "fp32", "bf16", "--layouts", "contiguous", "channels_last_3d",
        "--warmup", "1", "--iters", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == record
    rows = record["rows"]
    assert len(rows) == 3 * 2 * 2 * 2  # models x layouts x batch sizes x dtypes
    assert {(r["model"], r["batch_size"], r["dtype"], r["layout"]) for r in rows} == {
        (m, b, d, lay) for m in models for b in (1, 2) for d in ("fp32", "bf16")
        for lay in ("contiguous", "channels_last_3d")}
    fp32 = [r for r in rows if r["dtype"] == "fp32"]
    assert all(r["error"] is None and r["clips_per_s"] > 0 and math.isfinite(r["clips_per_s"]) for r in fp32)
    assert all(r["error"] or r["clips_per_s"] > 0 for r in rows)  # bf16 on a CPU may be unsupported: a row says so
    assert record["device"].startswith("CPU") and "clips/s" in capsys.readouterr().out


def test_model_specs_name_any_registered_variant(benchmarks):
    build = benchmarks("model_throughput").build
    student, frame_step = build("student:resnet3d:depth=10,width=0.25,max_pool=false", 5)
    assert student.class_head.out_features == 5 and student.backbone.conv1.out_channels == 16 and frame_step == 1
    assert isinstance(student.backbone.maxpool, torch.nn.Identity)
    assert build("student:shufflenetv2_3d:0.5", 5)[0].class_head.in_features == 1024
    assert build("student:shufflenetv2_3d:width=0.5,frame_step=2", 5)[1] == 2
    assert sum(p.numel() for p in build("teacher:resnext3d:50", 400)[0].parameters()) < 48e6  # depth 50, not 101
    assert build("teacher:r3d_18", 3)[0].fc.out_features == 3
    with pytest.raises(ValueError, match="expected teacher:NAME"):
        build("sampler:resnet3d", 5)
    with pytest.raises(ValueError, match="frame_step is a student option"):
        build("teacher:resnext3d:depth=50,frame_step=2", 5)


def test_decode_throughput_smoke(tmp_path, benchmarks):
    out = tmp_path / "decode.json"
    record = benchmarks("decode_throughput").main([
        "--codecs", "h264", "mjpeg", "--width", "96", "--height", "64", "--seconds", "1", "--clip-len", "5",
        "--size", "32", "--processes", "2", "--skim-steps", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == record
    rows = record["rows"]
    assert {(r["codec"], r["mode"], r["processes"]) for r in rows} == {
        (c, m, p) for c in ("h264", "mjpeg") for m in ("raw", "clips", "skim2") for p in (1, 2)}
    for row in rows:
        per_process = 25  # 1 s at 25 fps; in clips of 5 frames, 5 clips and no padding
        assert row["frames"] == per_process * row["processes"]
        assert row["frames_per_s"] > 0 and row["clips_per_s"] == pytest.approx(row["frames_per_s"] / 5, abs=0.1)


@pytest.mark.slow
def test_label_throughput_smoke(tmp_path, benchmarks, ray_runtime):
    out = tmp_path / "label.json"
    record = benchmarks("label_throughput").main([
        "--videos", "12", "--seconds", "4", "--width", "64", "--height", "48", "--classes", "3", "--clip-len", "4",
        "--size", "32", "--ks", "1", "--teacher-arch", "shufflenetv2_3d", "--student-width", "0.25",
        "--skim-step", "2", "--evaluate", "--workdir", str(tmp_path), "--out", str(out)])
    assert json.loads(out.read_text()) == record
    rows = {(r["strategy"], r["k"], r["student_frame_step"]): r for r in record["rows"]}
    assert set(rows) == {("dense", "all", 1), ("equidistant", 1, 1), ("condi_sr", 1, 1), ("condi_sr", 1, 2)}
    skim = rows.pop(("condi_sr", 1, 2))
    assert "evaluate_accuracy" not in skim  # evaluate ran the first student only
    assert skim["clips_scored"] == 12 * 25 and skim["clips_to_teacher"] == 12 and skim["student_s"] > 0
    rows = {key[:2]: row for key, row in rows.items()}
    dense = rows["dense", "all"]
    assert all(r["videos"] == 12 and r["errors"] == 0 for r in rows.values())
    assert dense["clips_to_teacher"] == rows["condi_sr", 1]["clips_scored"] == 12 * 25  # 4 s at 25 fps: 25 clips of 4
    assert rows["condi_sr", 1]["clips_to_teacher"] == rows["equidistant", 1]["clips_to_teacher"] == 12
    # Dense and ConDi-SR decode every frame; Equidistant seeks to its clip: the grid's first frame, its 4 and
    # the reference frames before it in its GOP, and the next frame for its end
    assert dense["frames_decoded"] == rows["condi_sr", 1]["frames_decoded"] == 12 * 100
    assert rows["equidistant", 1]["decode_mode"] == "seek" and rows["equidistant", 1]["frames_decoded"] < 12 * 50
    assert dense["decode_mode"] == rows["condi_sr", 1]["decode_mode"] == "full"
    assert rows["condi_sr", 1]["clips_to_teacher_vs_dense"] == pytest.approx(1 / 25, abs=1e-3)
    assert all(r["test_videos"] > 0 for r in rows.values())
    assert rows["condi_sr", 1]["student_s"] > 0 and rows["equidistant", 1]["student_s"] == 0
    assert all(0 <= r["accuracy"] <= 1 for r in rows.values())
    # the labels of the test videos are evaluate's: the same accuracy for every strategy
    assert all(r["test_accuracy"] == pytest.approx(r["evaluate_accuracy"], abs=1e-4) for r in rows.values())
    # the models' seconds over (wall seconds x the 2 CPUs of the test's Ray)
    for r in rows.values():
        assert r["busy_share"] == pytest.approx((r["student_s"] + r["teacher_s"]) / (r["seconds"] * 2), abs=2e-3)
    assert 0 < rows["condi_sr", 1]["busy_share"] < 1


def test_the_gpu_harness_and_the_stages_it_runs_import_without_ray():
    """The GPU machine has no Ray: the harness, the stages and the driver's checks must not need it."""
    code = ("import sys; sys.modules['ray'] = None; sys.path.insert(0, 'benchmarks'); import gpu_harness; "
            "from raycondi.pipeline import check_models, list_videos; import raycondi.pipeline.gpu; "
            "import raycondi.video.nvdec; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=BENCHMARKS.parent, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.slow
def test_gpu_harness_smoke(tmp_path, benchmarks):
    out = tmp_path / "harness.json"
    record = benchmarks("gpu_harness").main([
        "--videos", "4", "--seconds", "4", "--width", "64", "--height", "48", "--size", "32", "--clip-len", "4",
        "--classes", "3", "--teacher-arch", "shufflenetv2_3d", "--student-width", "0.25", "--workers", "2",
        "--workdir", str(tmp_path), "--out", str(out)])
    assert json.loads(out.read_text()) == record and record["device"].startswith("CPU")
    rows = {(r["strategy"], r["candidates"]): r for r in record["rows"]}
    assert set(rows) == {("dense", "clips"), ("condi_sr", "clips"), ("condi_sr", "keyframes")}
    for row in rows.values():
        assert row["videos"] == 4 and row["videos_per_s"] > 0 and row["decode_bound_videos_per_s"] > 0
        assert 0 < row["gpu_stage_share"] < 1 and row["nvml_busy"] is None  # no GPU: no NVML samples
        assert row["of_decode_bound"] == pytest.approx(row["videos_per_s"] / row["decode_bound_videos_per_s"])
    assert rows["dense", "clips"]["vs_dense"] == 1.0


@pytest.mark.slow
def test_gpu_suite_smoke_runs_every_step(tmp_path):
    """The GPU script at toy sizes on CPU (SMOKE=1): what a GPU session runs once, checked before it does."""
    env = {**os.environ, "SMOKE": "1", "RESULTS": str(tmp_path)}
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_suite.sh")], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tests = (tmp_path / "gpu_tests.txt").read_text()
    assert " passed" in tests and "failed" not in tests and "needs a CUDA GPU" in tests
    assert len(json.loads((tmp_path / "model_throughput_cuda.json").read_text())["rows"]) == 2 * 2 * 2 * 2
    harness = json.loads((tmp_path / "gpu_harness_cuda.json").read_text())
    assert [r["strategy"] for r in harness["rows"]] == ["dense", "condi_sr", "condi_sr"]
    projection = json.loads((tmp_path / "projection_gpu_node.json").read_text())
    assert projection["model_rates_source"].startswith("measured: model_throughput_cuda")


def test_distill_auroc_equidistant_and_gradient_sources_hand_computed(benchmarks):
    bench = benchmarks("distill_auroc")
    clips = {"video_id": np.array(["a", "a", "a", "b", "b"]), "clip_index": np.array([2, 0, 1, 0, 1]),
             "label": np.array([0, 0, 0, 1, 1])}
    # a: 3 clips, Equidistant@1 takes clip 1 (right); b: 2 clips, it takes clip 1 (wrong)
    teacher = np.array([[0.0, 5.0], [0.0, 5.0], [5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])
    assert bench.equidistant_accuracy(clips, teacher, 1) == 0.5
    assert bench.equidistant_accuracy(clips, teacher, 3) == 0.0  # all clips: a wrong; b ties, lowest class (0)
    # clip 0 the teacher gets right (z = 1), clip 1 wrong (z = 0)
    teacher = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    base = {"label": np.array([0, 0]), "confidence_logit": np.array([0.3, -0.2])}
    agreeing = bench.gradient_sources({**base, "logits": teacher.copy()}, teacher, lam=0.5)
    # a student that agrees with the teacher: Eq. 5's pull on z~ goes the way the BCE term's does
    assert agreeing["grad_agree"] == 1.0 and 0 < agreeing["grad_share_kd"] < 1
    disagreeing = bench.gradient_sources({**base, "logits": np.array([[0.0, 0.0, 4.0], [0.0, 0.0, 4.0]])},
                                         teacher, lam=0.5)
    assert disagreeing["grad_agree"] == 0.0  # ... and against it where the student disagrees
    assert bench.gradient_sources({**base, "logits": teacher.copy()}, teacher, lam=0.0)["grad_share_kd"] == 1.0


def test_report_many_smoke(tmp_path, capsys, benchmarks):
    out = tmp_path / "report.json"
    record = benchmarks("report_many").main(["--rows", "20000", "--files", "2", "--videos", "3",
                                             "--workdir", str(tmp_path), "--out", str(out)])
    assert json.loads(out.read_text()) == record
    assert record["rows"] == 20000 and record["ok"] + record["errors"] == 20000 and record["errors"] > 0
    assert record["videos_shown"] == record["decode_notes"] == 3 and record["pngs"] == 3 + 3  # 3 charts + 3 videos
    assert record["seconds"] > 0 and record["peak_rss_mib"] > 0 and "rows_per_second" in capsys.readouterr().out
