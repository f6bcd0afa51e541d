"""raycondi.quickstart: the K chosen from accuracy.csv, and one reduced quickstart end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from raycondi.cli import build_parser
from raycondi.datasets.manifests import read_dataset
from raycondi.quickstart import QuickstartConfig, best_k, quickstart, training_slots
from raycondi.strategies import METHODS

ACCURACY = """strategy,k,accuracy,videos
oracle,1,0.9,10
condi_sr,1,0.5,10
condi_sr,3,0.7,10
condi_sr,5,0.7,10
condi_sr,7,0.6,10
st_ent,1,0.8,10
dense,all,0.9,10
"""


def test_best_k_is_condi_sr_best_and_smallest_on_ties():
    assert best_k(ACCURACY, (1, 3, 5, 7)) == 3  # 0.7 at K=3 and K=5: the cheaper one
    assert best_k(ACCURACY, (1, 7)) == 7  # only the evaluated K count
    assert best_k("strategy,k,accuracy,videos\nst_ent,1,0.8,10\n", (1, 3)) == 1  # no ConDi-SR row: K = 1


def test_config_rejects_bad_numbers():
    with pytest.raises(ValueError, match="crop_size 48 must not exceed size 40"):
        QuickstartConfig(crop_size=48)
    with pytest.raises(ValueError, match="videos must be >= 1"):
        QuickstartConfig(videos=0)


def test_cli_parses_workdir():
    args = build_parser().parse_args(["quickstart", "--workdir", "/tmp/qs"])
    assert args.workdir == "/tmp/qs" and args.run.__name__ == "_quickstart"


@pytest.mark.parametrize("cpus, expected", [(2, (2, 0.5)), (3, (3, 2 / 3)), (8, (4, 1.75)), (1, (1, 0.5))])
def test_training_slots_one_run_per_core_one_cpu_left_for_reads(cpus, expected):
    slots, per_worker = training_slots(cpus, len(METHODS))
    assert (slots, per_worker) == pytest.approx(expected)
    assert slots * per_worker <= max(cpus - 1, 0.5)


@pytest.mark.slow
def test_reduced_quickstart_writes_every_output(tmp_path, capsys):
    config = QuickstartConfig(workdir=str(tmp_path / "qs"), videos=24, classes=3, max_seconds=3.0,
                              teacher_epochs=1, distill_epochs=1, ks=(1, 3), num_cpus=2,
                              teacher_kwargs={"depth": 10, "width": 0.25, "conv1_t_size": 1})
    summary = quickstart(config)
    out = summary.outputs

    assert (tmp_path / "qs" / "clips" / "dataset.json").is_file()
    for checkpoint in ("teacher", *METHODS):
        assert (Path(out[checkpoint]) / "model" / "config.json").is_file(), checkpoint
        assert (Path(out[checkpoint]) / "model" / "model.pt").is_file(), checkpoint

    with open(f"{out['eval']}/accuracy.csv") as f:
        rows = list(csv.DictReader(f))
    strategies = {"oracle", "random", "equidistant", "max_prob", *METHODS}
    assert {(r["strategy"], r["k"]) for r in rows} == {(s, str(k)) for s in strategies for k in (1, 3)} | {
        ("dense", "all")}
    assert summary.best_k in (1, 3)

    dataset = read_dataset(out["videos"])
    test_ids = {v for v, split in zip(dataset["video_id"].to_pylist(), dataset["split"].to_pylist(), strict=True)
                if split == "test"}
    labels = pq.read_table([str(p) for p in sorted(Path(out["labels"]).glob("part-*.parquet"))])
    assert labels.num_rows == len(test_ids) > 0
    assert set(labels["video_id"].to_pylist()) == test_ids
    assert set(labels["status"].to_pylist()) == {"ok"}
    assert set(labels["strategy"].to_pylist()) == {"condi_sr"}
    assert set(labels["k"].to_pylist()) == {summary.best_k}
    # the labels deliver what Table III promised at that K
    assert summary.labels_accuracy == pytest.approx(summary.table_accuracy)

    captured = capsys.readouterr()
    printed = captured.out
    assert "[5/8] distil the bce_conf, st_ent, st_conf, condi_sr students (1 epochs, 2 at a time)" in printed
    assert all(f"{method} student: done in" in printed for method in METHODS)
    assert "[7/8] label the test videos" in printed
    assert "[8/8] write the labels' report" in printed and summary.report in printed
    page = Path(summary.report).read_text()
    assert summary.report == f"{out['labels']}/_report/index.html" and "lowest-scored</h2>" in page
    assert "teacher epoch 1/1: train_loss" in captured.err  # the training's progress, as the epoch ends
    assert "Table III" in printed and out["labels"] in printed and "Next:" in printed
    assert f"Table III's ConDi-SR at K = {summary.best_k}: {100 * summary.table_accuracy:.1f} %" in printed
