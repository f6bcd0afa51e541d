"""The GPU layout's parts, on CPU as CI runs them: inference settings and their measurement, the candidates'
decode, and the GPU stage's rows against the fused stage's for the same videos. The CUDA-only parts skip, saying
why; ``benchmarks/gpu_suite.sh`` measures them on a GPU."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest
import torch

from raycondi.inference import CHOICES, InferenceSettings, check_choice
from raycondi.models import build_student
from raycondi.models.tuning import TunedModel, tune
from raycondi.pipeline import LabelConfig, check_models, list_videos
from raycondi.pipeline.gpu import CANDIDATE_SCHEMA, DecodeClips, GPUScoreSelectPredict
from raycondi.pipeline.plans import choose_clips, decode_candidates, unscored
from raycondi.pipeline.stages import ScoreSelectPredict
from raycondi.video.decode import ClipSpec, iter_clips
from tests.checkpoints import save_models, synth
from tests.videos import gradient_frames, write_video

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none; "
                                                                   "benchmarks/gpu_suite.sh runs it on one)")


@pytest.mark.parametrize("text, settings", [
    ("fp32", InferenceSettings()),
    ("bf16", InferenceSettings("bf16")),
    ("fp32+channels_last_3d", InferenceSettings(layout="channels_last_3d")),
    ("bf16+channels_last_3d+cuda_graphs", InferenceSettings("bf16", "channels_last_3d", "cuda_graphs")),
    ("bf16+compile", InferenceSettings("bf16", compile="default")),
])
def test_inference_settings_round_trip_through_text(text, settings):
    assert InferenceSettings.parse(text) == settings and str(settings) == text
    assert check_choice(text) == text


@pytest.mark.parametrize("text, message", [
    ("fp16", "expected fp32 or bf16 first, got 'fp16'"),
    ("bf16+nhwc", "unexpected 'nhwc'"),
    ("fp32+compile+cuda_graphs", "unexpected 'cuda_graphs'"),
])
def test_bad_inference_settings_name_the_bad_part(text, message):
    with pytest.raises(ValueError, match=message):
        check_choice(text)


def _student() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return build_student("shufflenetv2_3d", 3, width=0.25).eval(), torch.randn(4, 3, 4, 32, 32)


def test_fp32_settings_compute_the_plain_model_exactly():
    model, x = _student()
    with torch.inference_mode():
        expected = model(x)
        for choice in CHOICES:  # on CPU, auto measures nothing and keeps the reference path
            tuned, timings = tune(model, x, choice)
            assert tuned.settings == InferenceSettings() and timings == {}
            for got, want in zip(tuned(x), expected, strict=True):
                assert torch.equal(got, want)
        channels_last = TunedModel(model, InferenceSettings(layout="channels_last_3d"), 4)(x)
    for got, want in zip(channels_last, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)  # the same function, other kernels
    model.to(memory_format=torch.contiguous_format)


def test_bf16_autocast_runs_fp32_weights_and_returns_fp32():
    model, x = _student()
    with torch.inference_mode():
        logits, z = TunedModel(model, InferenceSettings("bf16"), 4)(x)
        reference, _ = model(x)
    assert logits.dtype == z.dtype == torch.float32 and next(model.parameters()).dtype == torch.float32
    assert (logits - reference).abs().max() < 0.1 * reference.abs().max() + 0.05  # bf16 keeps ~3 digits


def test_measured_tuning_keeps_the_fastest_setting(caplog):
    caplog.set_level(logging.INFO, logger="raycondi.tuning")
    model, x = _student()
    tuned, timings = tune(model, x, "auto", name="tiny", iters=1, measure=True)
    assert set(timings) == {"fp32", "fp32+channels_last_3d", "bf16", "bf16+channels_last_3d"}
    assert str(tuned.settings) == min(timings, key=timings.get)
    assert any(m.startswith(f"tiny: {tuned.settings} at batch 4 (clips/s: fp32 ") for m in caplog.messages)


def test_explicit_settings_are_taken_as_given_without_measuring():
    model, x = _student()
    tuned, timings = tune(model, x, "bf16+channels_last_3d")
    assert tuned.settings == InferenceSettings("bf16", "channels_last_3d") and timings == {}
    model.to(memory_format=torch.contiguous_format)


@CUDA
def test_compiled_cuda_graphs_pad_short_batches_and_match_eager():
    model, x = _student()
    model, x = model.cuda(), x.cuda()
    with torch.inference_mode():
        eager = model(x[:3])
        graphed = TunedModel(model, InferenceSettings(compile="cuda_graphs"), 4)
        for _ in range(3):  # warm-up, capture, replay
            got = graphed(x[:3])
    assert got[0].shape == (3, 3)
    torch.testing.assert_close(got[0], eager[0], rtol=1e-3, atol=1e-3)


def test_decode_candidates_are_the_clips_the_samplers_score(tmp_path):
    options = {"preset": "veryfast", "x264-params": "keyint=12:min-keyint=12:scenecut=0"}
    video = str(write_video(tmp_path / "gop.mp4", gradient_frames(60, 64, 48), options=options))
    spec = ClipSpec(4, 32)
    found, plan, fallback = decode_candidates(video, spec=spec)
    every = list(iter_clips(video, 4, 32))
    assert (plan, fallback, found.num_clips, found.decoder) == ("full", None, 15, "pyav")
    assert found.clips.tolist() == list(range(15)) and found.frames.shape == (15, 4, 32, 32, 3)
    assert np.array_equal(found.frames, np.stack([c.frames for c in every]))
    assert found.starts.tolist() == [c.start_s for c in every] and found.ends.tolist() == [c.end_s for c in every]
    keyframes, plan, _ = decode_candidates(video, spec=spec, candidates="keyframes", reach=4)
    chosen, _, _ = choose_clips(video, "condi_sr", 2, spec=spec, candidates="keyframes", reach=4, scorer=unscored)
    assert plan == "keyframes" and keyframes.num_clips == 15 and keyframes.clips.tolist() == chosen.clips.tolist()
    assert np.array_equal(keyframes.frames, found.frames[keyframes.clips])


def test_decode_candidates_fall_back_to_pyav_without_nvdec(tmp_path, caplog):
    video = str(write_video(tmp_path / "v.mp4", gradient_frames(12, 64, 48)))
    found, _, _ = decode_candidates(video, spec=ClipSpec(4, 32), decoder="nvdec")
    reference, _, _ = decode_candidates(video, spec=ClipSpec(4, 32))
    if torch.cuda.is_available():
        pytest.skip("NVDEC may exist here: tests/test_nvdec.py checks it")
    assert found.decoder == "pyav" and np.array_equal(found.frames, reference.frames)


TIMING = ("decode_s", "student_s", "teacher_s")


@pytest.mark.parametrize("options", [dict(k=3, k_student=1), dict(k=2, candidates="keyframes", keyframe_clips=1),
                                     dict(k=2, strategy="st_ent")])
def test_gpu_stage_rows_are_the_fused_stage_rows(tmp_path, options):
    videos = tmp_path / "videos"
    synth(str(videos), 4)
    (tmp_path / "broken.mp4").write_bytes(b"not a video" * 30)
    teacher, student = save_models(str(tmp_path / "models"))
    config = LabelConfig(str(videos), str(tmp_path / "out"), teacher, student, student_batch_size=3, **options)
    clip, models = check_models(config)
    listing = list_videos(str(videos))
    listing = pa.concat_tables([listing, pa.table({"video_id": ["broken"], "uri": [str(tmp_path / "broken.mp4")]},
                                                  schema=listing.schema)])
    fused = {r["video_id"]: r for r in ScoreSelectPredict(config, clip, models)(listing).to_pylist()}
    candidates = DecodeClips(config, clip, models)(listing)
    assert candidates.schema == CANDIDATE_SCHEMA
    handed_over = pa.concat_tables([candidates.slice(0, 3), candidates.slice(3)])  # two GPU calls, batched
    gpu_stage = GPUScoreSelectPredict(config, 0.0)
    rows = [r for batch in handed_over.to_batches(max_chunksize=3) for r in
            gpu_stage(pa.Table.from_batches([batch])).to_pylist()]
    assert sorted(r["video_id"] for r in rows) == sorted(fused) and len(rows) == 5
    for row in rows:
        want = fused[row["video_id"]]
        if want["status"] == "error":
            assert row["status"] == "error" and row["error"] == want["error"] and row["label"] is None
            continue
        for column, value in row.items():
            if column in TIMING:
                assert value >= 0
            elif column in ("score", "top5_scores", "clip_confidence", "selected_confidence"):
                np.testing.assert_allclose(value, want[column], rtol=1e-5, atol=1e-6)
            else:
                assert value == want[column], column


def test_student_batches_run_across_videos_copying_only_what_spans_two():
    from raycondi.pipeline.stages import _batches

    parts = [np.arange(5), np.arange(5, 7), np.arange(7, 15)]
    batches = list(_batches(parts, 4))
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14]]
    assert np.shares_memory(batches[0], parts[0]) and np.shares_memory(batches[2], parts[2])  # views, no copy
    assert not np.shares_memory(batches[1], parts[0])
    assert list(_batches([np.arange(0)], 4)) == []
