"""Errors before launch: every option the driver can check is checked there, before a Ray job starts, and the
problem is one line naming the option and the fix (issue 22, item 3: the training commands and prepare; label's
own checks are in tests/test_label.py)."""

from __future__ import annotations

import pytest
import ray
import torch

from raycondi.cli import main
from raycondi.datasets.shards import prepare, read_summary
from raycondi.models import CheckpointConfig, build_model, save_checkpoint
from raycondi.video.decode import ClipSpec
from tests.checkpoints import CLIP_LEN, synth


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Tiny 20-pixel shards (made with a Ray that is shut down again) and teacher checkpoints in run folders."""
    root = tmp_path_factory.mktemp("checks")
    synth(str(root / "videos"), 6)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        prepare(str(root / "videos"), str(root / "clips"), clip=ClipSpec(clip_len=CLIP_LEN, size=20))
    finally:
        ray.shutdown()
    torch.manual_seed(0)
    for name, classes in (("run", read_summary(str(root / "clips")).classes), ("other", ("a", "b", "c", "d", "e"))):
        save_checkpoint(build_model("resnet3d", len(classes), depth=10, width=0.25), str(root / name / "model"),
                        CheckpointConfig("resnet3d", len(classes), model_kwargs={"depth": 10, "width": 0.25},
                                         class_names=classes, clip_len=CLIP_LEN, crop_size=16, resize=20))
    return root


def _refused(capsys, argv: list[str]) -> str:
    """Run the CLI; assert it refused with one line and started no Ray; return that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert not ray.is_initialized()
    return err


def test_a_crop_larger_than_the_shards(shards, capsys):
    err = _refused(capsys, ["train-teacher", "--clips", str(shards / "clips"), "--out", str(shards / "t1")])
    assert err == (f"raycondi train-teacher: --crop-size 112: a 112-pixel crop is larger than the shards' 20x20 clips "
                   f"({shards / 'clips'}); crop 20 or less, or prepare the shards with --size 112 or more")


def test_an_unknown_architecture_option(shards, capsys):
    err = _refused(capsys, ["train-teacher", "--clips", str(shards / "clips"), "--out", str(shards / "t2"),
                            "--preset", "small", "--crop-size", "16", "--model-kwargs", '{"depthh": 10}'])
    assert err.startswith("raycondi train-teacher: --model-kwargs: resnet3d cannot be built with {'depthh': 10}")
    err = _refused(capsys, ["train-teacher", "--clips", str(shards / "clips"), "--out", str(shards / "t3"),
                            "--model-kwargs", "{depth: 10}"])
    assert err.startswith("raycondi train-teacher: Expecting property name")  # not JSON


@pytest.mark.parametrize("command", ["distill", "tune"])
def test_a_run_folder_for_a_checkpoint(shards, capsys, command):
    err = _refused(capsys, [command, "--clips", str(shards / "clips"), "--out", str(shards / "d1"),
                            "--preset", "small", "--teacher", str(shards / "run")])
    assert err == (f"raycondi {command}: --teacher {shards / 'run'}: a training run's folder, not its checkpoint; "
                   f"give --teacher {shards / 'run' / 'model'}")


def test_a_teacher_of_other_classes_and_a_student_that_cannot_be_built(shards, capsys):
    base = ["distill", "--clips", str(shards / "clips"), "--out", str(shards / "d2"), "--preset", "small"]
    err = _refused(capsys, [*base, "--teacher", str(shards / "other" / "model")])
    assert "its 5 classes are not the shards' 3" in err
    err = _refused(capsys, [*base, "--teacher", str(shards / "run" / "model"), "--student", "shufflenetv2_3d",
                            "--student-kwargs", '{"width": 7}'])
    assert err.startswith("raycondi distill: --student-kwargs: shufflenetv2_3d cannot be built with {'width': 7}")


def test_prepare_into_a_folder_that_is_not_empty(shards, capsys):
    err = _refused(capsys, ["prepare", "--dataset", str(shards / "videos"), "--out", str(shards / "clips")])
    assert err == f"raycondi prepare: {shards / 'clips'}: output folder is not empty; prepare writes into a new folder"


def test_prepare_from_a_missing_bucket(s3_server, capsys):
    err = _refused(capsys, ["prepare", "--dataset", "s3://no-such-bucket-here/videos", "--out", "s3://x/y"])
    assert err == "raycondi prepare: s3://no-such-bucket-here/videos: no such bucket 'no-such-bucket-here'"
