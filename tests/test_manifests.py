"""Dataset layouts read from local disk and from S3 (moto on loopback): UCF-101, Kinetics, plain manifests."""

from __future__ import annotations

import io
import uuid
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raycondi.datasets.manifests import (
    ManifestError,
    carve_validation,
    classes_of,
    detect_format,
    read_dataset,
)
from raycondi.video.storage import join, write_bytes

VIDEO = b"not decoded by the manifest reader"


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    """An empty dataset folder, on local disk or under a fresh S3 prefix."""
    if request.param == "local":
        return str(tmp_path / "data")
    s3 = request.getfixturevalue("s3_server")
    return s3.uri(f"manifests/{uuid.uuid4().hex}")


def put(root: str, files: dict[str, bytes | str]) -> None:
    for relative, data in files.items():
        write_bytes(join(root, relative), data.encode() if isinstance(data, str) else data)


def rows(table: pa.Table) -> list[tuple]:
    columns = [table[c].to_pylist() for c in ("video_id", "uri", "label", "label_index", "split")]
    return list(zip(*columns, strict=True))


# --- UCF-101 ---------------------------------------------------------------------------------------------


def ucf_files(train_per_class: int = 1) -> dict[str, str | bytes]:
    """Two classes; the lists spell the second one HandStandPushups, as the official UCF-101 lists do."""
    train = [f"ApplyEyeMakeup/v_ApplyEyeMakeup_g{g:02d}_c01.avi 1" for g in range(2, 2 + train_per_class)]
    train += [f"HandStandPushups/v_HandStandPushups_g{g:02d}_c01.avi 2" for g in range(2, 2 + train_per_class)]
    test = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "HandStandPushups/v_HandStandPushups_g01_c01.avi"]
    files: dict[str, str | bytes] = {
        "classInd.txt": "1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n3 YoYo\r\n",
        "trainlist01.txt": "\r\n".join(train) + "\r\n",
        "testlist01.txt": "\n".join(test) + "\n",
        "trainlist02.txt": "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n",
        "testlist02.txt": "HandStandPushups/v_HandStandPushups_g01_c01.avi\n",
    }
    for line in train + test:
        files[line.split(" ")[0]] = VIDEO
    return files


def test_ucf101(root):
    put(root, ucf_files())
    table = read_dataset(root)
    assert table.column_names == ["video_id", "uri", "label", "label_index", "split"]
    assert classes_of(table) == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    # one training video per class stays in train (a class of one is never emptied into val)
    assert rows(table) == [
        (
            "v_ApplyEyeMakeup_g02_c01",
            join(root, "ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi"),
            "ApplyEyeMakeup",
            0,
            "train",
        ),
        (
            "v_HandStandPushups_g02_c01",
            join(root, "HandStandPushups/v_HandStandPushups_g02_c01.avi"),
            "HandstandPushups",
            1,
            "train",
        ),
        (
            "v_ApplyEyeMakeup_g01_c01",
            join(root, "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"),
            "ApplyEyeMakeup",
            0,
            "test",
        ),
        (
            "v_HandStandPushups_g01_c01",
            join(root, "HandStandPushups/v_HandStandPushups_g01_c01.avi"),
            "HandstandPushups",
            1,
            "test",
        ),
    ]


def test_ucf101_split_number_picks_the_lists(root):
    put(root, ucf_files())
    table = read_dataset(root, "ucf101", split=2)
    assert [(r[0], r[4]) for r in rows(table)] == [
        ("v_ApplyEyeMakeup_g01_c01", "train"),
        ("v_HandStandPushups_g01_c01", "test"),
    ]


def test_ucf101_carves_a_stratified_validation_split(tmp_path):
    root = str(tmp_path)
    put(root, ucf_files(train_per_class=20))
    table = read_dataset(root)
    counts = Counter(zip(table["label"].to_pylist(), table["split"].to_pylist(), strict=True))
    assert counts == {
        ("ApplyEyeMakeup", "train"): 18,
        ("ApplyEyeMakeup", "val"): 2,
        ("HandstandPushups", "train"): 18,
        ("HandstandPushups", "val"): 2,
        ("ApplyEyeMakeup", "test"): 1,
        ("HandstandPushups", "test"): 1,
    }
    assert read_dataset(root).equals(table)  # same seed, same videos


# --- Kinetics --------------------------------------------------------------------------------------------

KINETICS_TRAIN = """label,youtube_id,time_start,time_end,split,is_cc
abseiling,-3B32lodo2M,59,69,train,0
abseiling,0347ZoDXyP0,10,20,train,0
playing cards,7kbN9QdCIPI,0,10,train,0
"""
KINETICS_VALIDATE = """label,youtube_id,time_start,time_end,split,is_cc
playing cards,x_1234abcd0,127,137,validate,0
"""


def kinetics_files() -> dict[str, str | bytes]:
    return {
        "train.csv": KINETICS_TRAIN,
        "validate.csv": KINETICS_VALIDATE,
        "abseiling/-3B32lodo2M_000059_000069.mp4": VIDEO,
        "abseiling/0347ZoDXyP0_000010_000020.mp4": VIDEO,
        "playing cards/7kbN9QdCIPI_000000_000010.mp4": VIDEO,
        "playing cards/x_1234abcd0_000127_000137.mp4": VIDEO,
    }


def test_kinetics_root(root):
    put(root, kinetics_files())
    table = read_dataset(root)
    assert classes_of(table) == ["abseiling", "playing cards"]
    # the CSVs give a validation split, so nothing is carved from train
    assert rows(table) == [
        ("-3B32lodo2M_000059_000069", join(root, "abseiling/-3B32lodo2M_000059_000069.mp4"), "abseiling", 0, "train"),
        ("0347ZoDXyP0_000010_000020", join(root, "abseiling/0347ZoDXyP0_000010_000020.mp4"), "abseiling", 0, "train"),
        (
            "7kbN9QdCIPI_000000_000010",
            join(root, "playing cards/7kbN9QdCIPI_000000_000010.mp4"),
            "playing cards",
            1,
            "train",
        ),
        (
            "x_1234abcd0_000127_000137",
            join(root, "playing cards/x_1234abcd0_000127_000137.mp4"),
            "playing cards",
            1,
            "val",
        ),
    ]


def test_kinetics_single_csv(root):
    put(root, kinetics_files())
    table = read_dataset(join(root, "validate.csv"))
    assert rows(table) == [
        (
            "x_1234abcd0_000127_000137",
            join(root, "playing cards/x_1234abcd0_000127_000137.mp4"),
            "playing cards",
            0,
            "val",
        ),
    ]


# --- plain manifests -------------------------------------------------------------------------------------


def test_manifest_csv_relative_and_absolute_uris(root, tmp_path):
    outside = tmp_path / "elsewhere" / "clip.webm"
    outside.parent.mkdir()
    outside.write_bytes(VIDEO)
    put(
        root,
        {
            "lists/manifest.csv": "uri,label,split\nwalk/a.mp4,walk,train\n../run/b.mp4,run,validation\n"
            f"{outside},3,test\n",
            "lists/walk/a.mp4": VIDEO,
            "run/b.mp4": VIDEO,
        },
    )
    table = read_dataset(join(root, "lists/manifest.csv"))
    assert classes_of(table) == ["3", "run", "walk"]
    assert rows(table) == [
        ("walk/a", join(root, "lists/walk/a.mp4"), "walk", 2, "train"),
        (join(root, "run/b"), join(root, "run/b.mp4"), "run", 1, "val"),
        (str(outside.with_suffix("")), str(outside), "3", 0, "test"),
    ]


def test_manifest_parquet_without_split_is_train_with_carved_val(root):
    table = pa.table({"uri": [f"v{i}.mp4" for i in range(4)], "label": ["a", "a", "b", "b"]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    put(root, {"m.parquet": sink.getvalue(), **{f"v{i}.mp4": VIDEO for i in range(4)}})
    read = read_dataset(join(root, "m.parquet"))
    assert Counter(zip(read["label"].to_pylist(), read["split"].to_pylist(), strict=True)) == {
        ("a", "train"): 1,
        ("a", "val"): 1,
        ("b", "train"): 1,
        ("b", "val"): 1,
    }
    assert read["label_index"].to_pylist() == [0, 1, 0, 1]  # sorted by split, then video_id
    assert sorted(read["video_id"].to_pylist()) == ["v0", "v1", "v2", "v3"]


# --- detection -------------------------------------------------------------------------------------------


def test_detect_format(tmp_path):
    ucf, kinetics, manifests = str(tmp_path / "ucf"), str(tmp_path / "k"), str(tmp_path / "m")
    put(ucf, ucf_files())
    put(kinetics, kinetics_files())
    put(manifests, {"a.csv": "uri,label\nx.mp4,a\n", "b.parquet": b"", "other.csv": "path,label\nx.mp4,a\n"})
    assert detect_format(ucf) == "ucf101"
    assert detect_format(kinetics) == "kinetics"
    assert detect_format(join(kinetics, "train.csv")) == "kinetics"
    assert detect_format(join(manifests, "a.csv")) == "manifest"
    assert detect_format(join(manifests, "b.parquet")) == "manifest"
    with pytest.raises(ManifestError, match="neither Kinetics"):
        detect_format(join(manifests, "other.csv"))
    with pytest.raises(ManifestError, match="cannot tell the dataset format"):
        detect_format(manifests)


# --- validation split ------------------------------------------------------------------------------------


def split_table(sizes: dict[str, int]) -> pa.Table:
    labels = [label for label, n in sizes.items() for _ in range(n)]
    ids = [f"{label}_{i:03d}" for label, n in sizes.items() for i in range(n)]
    return pa.table(
        {
            "video_id": ids,
            "uri": ids,
            "label": labels,
            "label_index": [0] * len(ids),
            "split": ["train"] * len(ids),
        }
    )


def val_ids(table: pa.Table) -> set[str]:
    return {v for v, s in zip(table["video_id"].to_pylist(), table["split"].to_pylist(), strict=True) if s == "val"}


def test_carve_validation_counts_per_class():
    # round(0.1 n) with halves up, at least one from n >= 2, never the last one
    table = carve_validation(split_table({"a": 1, "b": 2, "c": 5, "d": 14, "e": 15, "f": 25, "g": 100}))
    val = Counter(v.split("_")[0] for v in val_ids(table))
    assert val == {"b": 1, "c": 1, "d": 1, "e": 2, "f": 3, "g": 10}
    assert table.num_rows == 162


def test_carve_validation_is_seeded_per_class():
    both = val_ids(carve_validation(split_table({"a": 30, "b": 30})))
    alone = val_ids(carve_validation(split_table({"b": 30})))
    assert {v for v in both if v.startswith("b")} == alone  # a class's choice does not depend on the others
    assert val_ids(carve_validation(split_table({"b": 30}), seed=1)) != alone


def test_carve_validation_leaves_test_alone():
    table = split_table({"a": 10})
    table = table.set_column(4, "split", pa.array(["test"] * 10))
    assert val_ids(carve_validation(table)) == set()


# --- problems --------------------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once(root):
    files = ucf_files()
    del files["ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi"]
    del files["HandStandPushups/v_HandStandPushups_g01_c01.avi"]
    files["trainlist01.txt"] += "Juggling/v_Juggling_g01_c01.avi 4\nYoYo/v_YoYo_g01_c01.avi 2\n"
    files["Juggling/v_Juggling_g01_c01.avi"] = VIDEO
    files["YoYo/v_YoYo_g01_c01.avi"] = VIDEO
    put(root, files)
    with pytest.raises(ManifestError) as raised:
        read_dataset(root)
    assert sorted(raised.value.problems) == sorted(
        [
            "testlist01.txt:2: missing file " + join(root, "HandStandPushups/v_HandStandPushups_g01_c01.avi"),
            "trainlist01.txt:1: missing file " + join(root, "ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi"),
            "trainlist01.txt:3: unknown label 'Juggling'",
            "trainlist01.txt:4: class index 2 disagrees with classInd.txt (YoYo is 3)",
        ]
    )
    assert str(raised.value).startswith(f"{root}: 4 problem(s)")


def test_problem_listing_is_capped(tmp_path):
    lines = "".join(f"v{i}.mp4,{'' if i % 2 else 'a'},train\n" for i in range(30))
    put(str(tmp_path), {"m.csv": "uri,label,split\n" + lines + "w.mp4,a,dev\n"})
    with pytest.raises(ManifestError) as raised:
        read_dataset(str(tmp_path / "m.csv"))
    problems = raised.value.problems
    # 15 empty labels, the bad split name, and the 15 missing files of the rows that were kept
    assert len(problems) == 31
    assert "m.csv:32: unknown split 'dev'; expected train, val (validate) or test" in problems
    message = str(raised.value)
    assert message.count("\n  - ") == 20 and message.endswith("\n  ... and 11 more")


def test_check_files_false_skips_the_listing(tmp_path):
    put(str(tmp_path), {"m.csv": "uri,label\ngone.mp4,a\n"})
    with pytest.raises(ManifestError, match="missing file"):
        read_dataset(str(tmp_path / "m.csv"))
    table = read_dataset(str(tmp_path / "m.csv"), check_files=False)
    assert rows(table) == [("gone", str(tmp_path / "gone.mp4"), "a", 0, "train")]


def test_duplicate_video_ids(tmp_path):
    put(str(tmp_path), {"m.csv": "uri,label\na.mp4,x\na.avi,y\n", "a.mp4": VIDEO, "a.avi": VIDEO})
    with pytest.raises(ManifestError, match=r"m.csv:3: duplicate video_id 'a' \(first at m.csv:2\)"):
        read_dataset(str(tmp_path / "m.csv"))
