"""An imported teacher works everywhere, on the quickstart's data and through the CLI on a real Ray: ``label
--strategy dense`` with no training, ``train-teacher --finetune`` (it converges), ``distill --teacher`` and
``evaluate``, whose Dense row is what ``label`` delivers with the same imported checkpoint."""

from __future__ import annotations

import csv
import json
import math

import pyarrow.parquet as pq
import pytest
import torch

from raycondi.cli import main
from raycondi.datasets.shards import prepare
from raycondi.datasets.synthetic import SynthConfig, generate_dataset
from raycondi.models import build_model, read_checkpoint_config
from raycondi.pipeline.sink import output_files
from raycondi.quickstart import QuickstartConfig, label_accuracy
from raycondi.video.decode import ClipSpec

pytestmark = pytest.mark.slow

QS = QuickstartConfig()
PREPROCESSING = ["--clip-len", str(QS.clip_len), "--resize", str(QS.size), "--crop-size", str(QS.crop_size),
                 "--mean", "0.45", "0.42", "0.39", "--std", "0.25", "0.25", "0.25"]
TEACHER = ["--architecture", QS.teacher, *(f"--option={k}={json.dumps(v)}" for k, v in QS.teacher_kwargs.items())]


@pytest.fixture(scope="module")
def archive(tmp_path_factory, ray_runtime):
    root = tmp_path_factory.mktemp("imported")
    videos, clips = root / "videos", root / "clips"
    generate_dataset(str(videos), SynthConfig(videos=60, seed=QS.seed, classes=QS.classes, clip_len=QS.clip_len,
                                              width=QS.width, height=QS.height, max_seconds=6.0), workers=1)
    prepare(str(videos), str(clips), clip=ClipSpec(clip_len=QS.clip_len, size=QS.size))
    return root


def _first_json(text: str) -> dict:
    return json.JSONDecoder().raw_decode(text[text.index("{"):])[0]


def _import(root, source, out) -> str:
    assert main(["import-weights", str(source), str(root / out), *TEACHER, *PREPROCESSING,
                 "--classes", str(root / "videos" / "classInd.txt")]) == 0
    return str(root / out)


def _labels(out) -> dict[str, dict]:
    return {row["video_id"]: row for row in pq.read_table(output_files(str(out), None)).to_pylist()}


def test_an_imported_state_dict_labels_finetunes_distils_and_evaluates(archive, capsys):
    root = archive
    torch.manual_seed(0)
    torch.save(build_model(QS.teacher, QS.classes, **QS.teacher_kwargs).state_dict(), root / "pretrained.pt")
    imported = _import(root, root / "pretrained.pt", "imported")
    config = read_checkpoint_config(imported)
    assert (config.clip_len, config.resize, config.crop_size, len(config.class_names)) == (8, 40, 32, QS.classes)
    assert (config.mean, config.std) == ((0.45, 0.42, 0.39), (0.25, 0.25, 0.25))

    # label --strategy dense, with no training at all
    assert main(["label", "--input", str(root / "videos"), "--output", str(root / "dense0"), "--teacher", imported,
                 "--strategy", "dense", "--split", "test"]) == 0
    rows = _labels(root / "dense0")
    with open(root / "videos" / "testlist01.txt") as f:
        test_videos = [line.split()[0] for line in f if line.strip()]
    assert len(rows) == len(test_videos) and {r["status"] for r in rows.values()} == {"ok"}
    assert {r["label"] for r in rows.values()} <= set(config.class_names)
    capsys.readouterr()

    # train-teacher --finetune from it converges
    assert main(["train-teacher", "--clips", str(root / "clips"), "--out", str(root / "finetuned"), "--preset",
                 "small", "--finetune", imported, "--cpus-per-worker", "1"]) == 0
    metrics = _first_json(capsys.readouterr().out)
    assert metrics["epoch"] == 5 and metrics["train_loss"] < 0.5 * math.log(QS.classes)
    assert metrics["val_clip_accuracy"] > 0.4  # chance: 1/6
    finetuned = read_checkpoint_config(str(root / "finetuned" / "model"))
    assert (finetuned.architecture, finetuned.mean, finetuned.std) == (QS.teacher, config.mean, config.std)

    # the fine-tuned weights as a user's state-dict file, imported: distill from it, evaluate and label with it
    teacher = _import(root, root / "finetuned" / "model" / "model.pt", "teacher")
    assert main(["distill", "--clips", str(root / "clips"), "--out", str(root / "condi"), "--preset", "small",
                 "--teacher", teacher, "--epochs", "1", "--cpus-per-worker", "1"]) == 0
    assert main(["evaluate", "--clips", str(root / "clips"), "--teacher", teacher, "--student",
                 f"condi_sr={root / 'condi' / 'model'}", "--k", "1", "--out", str(root / "eval"),
                 "--decode-videos", "1"]) == 0
    assert main(["label", "--input", str(root / "videos"), "--output", str(root / "dense"), "--teacher", teacher,
                 "--strategy", "dense", "--split", "test"]) == 0
    with open(root / "eval" / "accuracy.csv") as f:
        dense = next(float(r["accuracy"]) for r in csv.DictReader(f) if r["strategy"] == "dense")
    assert label_accuracy(str(root / "dense"), str(root / "videos")) == pytest.approx(dense, abs=1e-9)
    assert dense > 0.5
    assert main(["label", "--input", str(root / "videos"), "--output", str(root / "dense_finetuned"), "--teacher",
                 str(root / "finetuned" / "model"), "--strategy", "dense", "--split", "test"]) == 0
    ours, theirs = _labels(root / "dense"), _labels(root / "dense_finetuned")
    assert {v: r["label"] for v, r in ours.items()} == {v: r["label"] for v, r in theirs.items()}
