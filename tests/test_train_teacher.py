"""End to end on a real local Ray (2 CPUs) and a real S3 endpoint on loopback: a teacher, a condi_sr student
and a 4-trial ASHA search trained from tiny synthetic shards in S3, with every checkpoint written there."""

import json

import numpy as np
import pytest
import torch

from raycondi.datasets.shards import iter_clip_batches, prepare
from raycondi.datasets.synthetic import SynthConfig, generate_dataset
from raycondi.models import load_checkpoint, model_input
from raycondi.train.distill import DistillConfig, distill
from raycondi.train.outputs import load_teacher_logits, teacher_logits_uri
from raycondi.train.teacher import TeacherConfig, train_teacher
from raycondi.train.tune import SearchConfig, search
from raycondi.video.decode import ClipSpec
from raycondi.video.storage import list_files, read_bytes

pytestmark = pytest.mark.slow

TINY = {"crop_size": 16, "batch_size": 8, "workers": 2, "cpus_per_worker": 0.5, "lr": 0.02}


@pytest.fixture(scope="module")
def clips(s3_server, ray_runtime):
    videos, clips = s3_server.uri("train/videos"), s3_server.uri("train/clips")
    generate_dataset(videos, SynthConfig(videos=12, classes=3, width=64, height=48, clip_len=4, max_seconds=3.0),
                     workers=1)
    prepare(videos, clips, clip=ClipSpec(clip_len=4, size=20))
    return clips


@pytest.fixture(scope="module")
def teacher(s3_server, clips):
    out = s3_server.uri("train/teacher")
    result = train_teacher(TeacherConfig(clips=clips, out=out, model_kwargs={"width": 0.25}, epochs=1, **TINY))
    assert result.metrics["epoch"] == 1
    return out


def _predict(checkpoint: str, clips: str):
    model, config = load_checkpoint(checkpoint)
    batch = next(iter_clip_batches(clips, "val", batch_size=4))
    x = model_input(batch["frames"], config)
    with torch.no_grad():
        return model.eval()(x), config


def test_teacher_checkpoints_in_s3_load_and_predict(teacher, clips):
    epochs = [f for f in list_files(f"{teacher}/run") if f.endswith("/model.pt")]
    assert len(epochs) == 1 and epochs[0].startswith("s3://")
    logits, config = _predict(f"{teacher}/model", clips)
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()
    assert not config.student and config.crop_size == 16 and config.clip_len == 4
    assert config.resize == 20  # the shards' --size: label decodes at it
    state = torch.load(__import__("io").BytesIO(read_bytes(epochs[0].replace("model.pt", "train_state.pt"))),
                       weights_only=True)
    assert state["epoch"] == 1 and "optimizer" in state and "scheduler" in state


def test_condi_sr_student_from_stored_logits(s3_server, teacher, clips):
    out = s3_server.uri("train/condi_sr")
    result = distill(DistillConfig(clips=clips, teacher=f"{teacher}/model", out=out, student_kwargs={"width": 0.25},
                                   method="condi_sr", epochs=1, **{k: v for k, v in TINY.items() if k != "crop_size"}))
    metrics = result.metrics
    assert 0 <= metrics["val_auroc"] <= 1 or np.isnan(metrics["val_auroc"])
    assert {"val_video_accuracy_k1", "val_video_accuracy_k3", "val_video_accuracy_k5"} <= set(metrics)
    (logits, confidence), config = _predict(f"{out}/model", clips)
    assert config.student and logits.shape == (4, 3) and confidence.shape == (4,)
    # the teacher's logits were stored once, beside the shards, for every split
    stored = teacher_logits_uri(clips, f"{teacher}/model")
    assert stored.startswith(f"{clips}/teacher_logits/")
    val = load_teacher_logits(stored, "val")
    teacher_logits, _ = _predict(f"{teacher}/model", clips)
    batch = next(iter_clip_batches(clips, "val", batch_size=4))
    np.testing.assert_allclose(val.lookup(batch["video_id"], batch["clip_index"]), teacher_logits.numpy(),
                               rtol=1e-4, atol=1e-4)


def test_tune_four_trials_under_asha(s3_server, teacher, clips):
    out = s3_server.uri("train/tune")
    base = DistillConfig(clips=clips, teacher=f"{teacher}/model", out=out, student_kwargs={"width": 0.25}, epochs=2,
                         batch_size=8, lr=0.02)
    record = search(SearchConfig(distill=base, out=out, samples=4, cpus_per_trial=0.5, max_concurrent_trials=2))
    assert json.loads(read_bytes(f"{out}/best.json")) == json.loads(json.dumps(record))
    trials = [json.loads(read_bytes(f)) for f in list_files(f"{out}/tune") if f.endswith("/params.json")]
    assert len(trials) == 4 and record["config"] in trials
    model, config = load_checkpoint(record["checkpoint"])
    assert config.student and record["metric"] == "val_video_accuracy_k1"


@pytest.mark.parametrize("method, frame_step", [("st_ent", 1), ("st_conf", 1), ("bce_conf", 1), ("condi_sr", 2)])
def test_baseline_methods_train_one_epoch(s3_server, teacher, clips, method, frame_step, tmp_path):
    """The distillation loop run directly (one process, as a Tune trial runs it) for each baseline, and for a
    skimming ConDi-SR student that sees every other frame of the teacher's clips."""
    from raycondi.train.data import read_split
    from raycondi.train.distill import distill_loop, prepare_inputs

    config = DistillConfig(clips=clips, teacher=f"{teacher}/model", out=str(tmp_path), student_kwargs={"width": 0.25},
                           method=method, epochs=1, batch_size=8, lr=0.02, frame_step=frame_step)
    model_config, logits, _ = prepare_inputs(config)
    assert model_config.frame_step == frame_step
    reports = []

    def report(metrics, directory):
        state = torch.load(f"{directory}/train_state.pt", weights_only=True)
        reports.append((metrics, state))

    datasets = {split: read_split(clips, split) for split in ("train", "val")}
    distill_loop(config, model_config, logits, datasets, report, None)
    [(metrics, state)] = reports
    assert metrics["epoch"] == 1 and 0 <= metrics["val_clip_accuracy"] <= 1 and np.isfinite(metrics["train_loss"])
    # st_conf's DeVries λ moves every step from its initial 0.1; the other methods leave it alone
    assert (state["devries_lambda"] != 0.1) == (method == "st_conf")


@pytest.mark.parametrize("head_decay", [5.0, 2.0])
def test_the_confidence_heads_rate_falls_by_head_decay_every_epoch(teacher, clips, head_decay, tmp_path):
    from raycondi.train.data import read_split
    from raycondi.train.distill import distill_loop, prepare_inputs

    config = DistillConfig(clips=clips, teacher=f"{teacher}/model", out=str(tmp_path), student_kwargs={"width": 0.25},
                           epochs=2, batch_size=8, lr=0.02, head_decay=head_decay)
    model_config, logits, _ = prepare_inputs(config)
    states = []
    datasets = {split: read_split(clips, split) for split in ("train", "val")}
    distill_loop(config, model_config, logits, datasets,
                 lambda metrics, directory: states.append(torch.load(f"{directory}/train_state.pt",
                                                                     weights_only=True)), None)
    rates = [group["lr"] for state in states for group in state["optimizer"]["param_groups"]]
    assert rates == pytest.approx([0.02 / 1.25, 0.02 / head_decay, 0.02 / 1.25**2, 0.02 / head_decay**2])


def test_head_decay_below_one_is_refused():
    with pytest.raises(ValueError, match="head_decay=0.5: must be >= 1"):
        DistillConfig(clips="c", teacher="t", out="o", head_decay=0.5)
