"""Errors before launch: every option the driver can check is checked there, before a Ray job starts, and the
problem is one line naming the option and the fix (issue 22, item 3: the training commands, prepare, label and
evaluate, and an S3 endpoint that cannot be connected to)."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import torch

from raycondi.cli import main
from raycondi.datasets.shards import prepare, read_summary
from raycondi.models import (
    CheckpointConfig,
    build_model,
    build_student,
    save_checkpoint,
)
from raycondi.pipeline import LabelConfig
from raycondi.pipeline.checks import check_label_run
from raycondi.pipeline.schema import OUTPUT_SCHEMA
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
        save_checkpoint(build_student("shufflenetv2_3d", len(classes), width=0.25), str(root / name / "student"),
                        CheckpointConfig("shufflenetv2_3d", len(classes), model_kwargs={"width": 0.25}, student=True,
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


def _label(shards, *options: str) -> list[str]:
    """``raycondi label`` of the fixture's videos with its teacher and student, then ``options`` (later ones win)."""
    return ["label", "--input", str(shards / "videos"), "--output", str(shards / "labels"),
            "--teacher", str(shards / "run" / "model"), "--student", str(shards / "run" / "student"), *options]


def test_label_refuses_a_missing_input_and_one_without_videos(shards, capsys):
    nowhere, empty = shards / "nowhere", shards / "empty"
    empty.mkdir(exist_ok=True)
    err = _refused(capsys, _label(shards, "--input", str(nowhere)))
    assert err == f"raycondi label: --input {nowhere}: cannot list the input prefix: no such directory or prefix"
    err = _refused(capsys, _label(shards, "--input", str(empty)))
    assert err.startswith(f"raycondi label: --input {empty}: no video found with an extension among .mp4, ")


def test_label_refuses_checkpoints_that_cannot_serve(shards, capsys):
    run, student, other = shards / "run", shards / "run" / "student", shards / "other" / "model"
    err = _refused(capsys, _label(shards, "--teacher", str(run)))
    assert err == (f"raycondi label: --teacher {run}: a training run's folder, not its checkpoint; "
                   f"give --teacher {run / 'model'}")
    err = _refused(capsys, _label(shards, "--teacher", str(student)))
    assert err == (f"raycondi label: --teacher {student}: a two-headed student checkpoint; --teacher needs a plain "
                   "classifier (the teacher's checkpoint, train-teacher's OUT/model)")
    err = _refused(capsys, _label(shards, "--student", str(run / "model")))
    assert err == (f"raycondi label: --student {run / 'model'}: not a two-headed student checkpoint (no confidence "
                   "head); give distill's OUT/model")
    err = _refused(capsys, _label(shards, "--teacher", str(other)))
    assert err.startswith(f"raycondi label: --student {student}: num_classes 3 differs from the teacher's 5 ({other})")
    assert err.endswith("give a student distilled from this teacher")


@pytest.mark.parametrize("options, expected", [
    (["--k", "0"], "--k 0: k must be >= 1 (clips per video)"),
    (["--k", "2", "--k-student", "3"], "--k-student 3: k_student must be between 0 and k=2"),
    (["--strategy", "st_ent", "--k-student", "1"], "--k-student 1: k_student needs strategy='condi_sr', got 'st_ent'; "
                                                   "use --strategy condi_sr or --k-student 0"),
    (["--stages", "fused", "--teacher-gpus", "1"], "--stages fused: stages='fused' runs both models on CPU"),
    (["--inference", "fp16"], "--inference: inference setting 'fp16'"),
    (["--video-timeout", "0"], "--video-timeout 0: video_timeout must be > 0 seconds (leave it out for no limit)"),
])
def test_label_refuses_options_that_disagree(shards, capsys, options, expected):
    assert expected in _refused(capsys, _label(shards, *options))


def test_label_refuses_a_strategy_needing_a_student_without_one(shards, capsys):
    argv = _label(shards)
    del argv[argv.index("--student"):argv.index("--student") + 2]
    err = _refused(capsys, argv)
    assert err == ("raycondi label: invalid LabelConfig: --strategy condi_sr: strategy='condi_sr' needs a student "
                   "checkpoint; give --student (distill's OUT/model) or a teacher-only --strategy (dense, "
                   "equidistant, random)")


def test_label_refuses_an_output_it_cannot_resume(shards, capsys):
    file = shards / "labels.txt"
    file.write_text("not a folder")
    err = _refused(capsys, _label(shards, "--output", str(file)))
    assert err == f"raycondi label: --output {file}: is a file, not a folder; give a folder (new, or one to resume)"
    earlier = shards / "dense-labels"  # a row an earlier run wrote with another strategy
    earlier.mkdir(exist_ok=True)
    row = {"video_id": "v", "uri": "v.mp4", "status": "ok", "strategy": "dense", "k": 7, "k_student": 0,
           "teacher_model": str(shards / "run" / "model")}
    pq.write_table(pa.Table.from_pylist([row], schema=OUTPUT_SCHEMA), earlier / "part-earlier-000000.parquet")
    err = _refused(capsys, _label(shards, "--output", str(earlier)))
    assert err == (f"raycondi label: --output {earlier}: holds labels made with --strategy dense, this run's is "
                   "--strategy condi_sr; resuming would mix them: label into a new --output, or resume with the first "
                   "run's options")
    # the same teacher written another way resumes: the earlier row is not labelled again
    for teacher in (f"{shards}/run/model/", f"{shards}/run/./model", f"file://{shards}/run/model"):
        config = LabelConfig(str(shards / "videos"), str(earlier), teacher, strategy="dense")
        assert check_label_run(config)[3] == {"v"}
    err = _refused(capsys, _label(shards, "--output", str(earlier), "--strategy", "dense", "--teacher",
                                  str(shards / "other" / "model")))
    assert "holds labels made with --teacher " in err


def _evaluate(shards, *options: str) -> list[str]:
    return ["evaluate", "--clips", str(shards / "clips"), "--teacher", str(shards / "run" / "model"),
            "--out", str(shards / "eval"), "--decode-seconds", "0.01", "--split", "val", *options]


def test_evaluate_refuses_inputs_that_do_not_fit_the_shards(shards, capsys):
    clips, run, other = shards / "clips", shards / "run", shards / "other"
    err = _refused(capsys, _evaluate(shards, "--clips", str(shards / "videos")))
    assert err.startswith(f"raycondi evaluate: --clips {shards / 'videos'}: not clip shards from `raycondi prepare`")
    err = _refused(capsys, _evaluate(shards, "--teacher", str(run)))
    assert err == (f"raycondi evaluate: --teacher {run}: a training run's folder, not its checkpoint; "
                   f"give --teacher {run / 'model'}")
    err = _refused(capsys, _evaluate(shards, "--student", f"condi_sr={run / 'model'}"))
    assert err.startswith(f"raycondi evaluate: --student condi_sr={run / 'model'}: not a two-headed student")
    err = _refused(capsys, _evaluate(shards, "--student", f"condi_sr={other / 'student'}"))
    assert err == (f"raycondi evaluate: --student condi_sr={other / 'student'}: its 5 classes are not the shards' 3 "
                   f"({clips}); evaluate models trained on these shards' classes")
    err = _refused(capsys, _evaluate(shards, "--student", f"kd={run / 'student'}"))
    assert err.startswith(f"raycondi evaluate: invalid EvaluateConfig: --student kd={run / 'student'}: unknown student "
                          "method 'kd'; use one of ")
    assert "expected METHOD=CHECKPOINT" in _refused(capsys, _evaluate(shards, "--student", "condi_sr"))


def test_evaluate_refuses_options_that_cannot_run(shards, capsys):
    assert read_summary(str(shards / "clips")).videos == {"train": 3, "val": 3, "test": 0}
    err = _refused(capsys, _evaluate(shards, "--split", "test"))
    assert err == (f"raycondi evaluate: --split test: the shards have no test videos ({shards / 'clips'}); evaluate a "
                   "split they have: train (3 videos), val (3 videos)")
    assert "--k 0,3: expected positive integers" in _refused(capsys, _evaluate(shards, "--k", "3,0"))
    file = shards / "eval.txt"
    file.write_text("not a folder")
    err = _refused(capsys, _evaluate(shards, "--out", str(file)))
    assert err == f"raycondi evaluate: --out {file}: is a file, not a folder; give a folder (new, or one to resume)"
    err = _refused(capsys, _evaluate(shards, "--ground-truth", str(shards / "no.parquet")))
    assert err == (f"raycondi evaluate: --ground-truth {shards / 'no.parquet'}: no such file; give a "
                   "ground_truth.parquet, or leave it out")


@pytest.mark.parametrize("command", ["label", "evaluate", "train-teacher", "prepare"])
def test_an_s3_endpoint_that_cannot_be_connected_to(shards, capsys, command):
    """A closed loopback port: refused at once, not after every request's retries."""
    argv = {"label": _label(shards, "--input", "s3://videos/in"),
            "evaluate": _evaluate(shards, "--clips", "s3://videos/clips"),
            "train-teacher": ["train-teacher", "--clips", "s3://videos/clips", "--out", str(shards / "t4")],
            "prepare": ["prepare", "--dataset", "s3://videos/in", "--out", "s3://videos/out"]}[command]
    started = time.perf_counter()
    err = _refused(capsys, [*argv, "--endpoint-url", "http://127.0.0.1:9"])
    assert time.perf_counter() - started < 10
    assert err.startswith(f"raycondi {command}: --endpoint-url http://127.0.0.1:9: cannot connect to the S3 endpoint (")
    assert err.endswith("); check the URL and that the server is running and reachable from here")
