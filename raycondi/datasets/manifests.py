"""Dataset layouts: UCF-101 split lists, the Kinetics CSV and plain manifests, read into one video table.

:func:`read_dataset` returns a ``pyarrow.Table`` with one row per video::

    video_id     string   stable and unique (see below)
    uri          string   where the video is: local path, file:// or s3:// in the form the dataset was given
    label        string   class name
    label_index  int32    0-based index into the class list
    split        string   "train", "val" or "test"

The class list (every class, including classes with no video) is kept in the schema metadata; read it with
:func:`classes_of`. Rows are sorted by split (train, val, test), then ``video_id``.

Layouts
-------
``ucf101``: a root folder holding ``classInd.txt`` (``"1 ApplyEyeMakeup"`` lines), ``trainlist0N.txt``
(``"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"``), ``testlist0N.txt`` (``"ApplyEyeMakeup/v_..._c01.avi"``)
and the class folders; ``split=N`` picks the lists. ``label_index`` is the classInd index minus one. A list's
class folder is matched to classInd ignoring case when no exact match exists (the official UCF-101 lists say
``HandStandPushups`` where classInd says ``HandstandPushups``); the label is then classInd's spelling. A
trainlist index that disagrees with classInd is a problem. ``video_id`` is the file name without extension
(``v_ApplyEyeMakeup_g08_c01``), unique in UCF-101 and the id the synthetic benchmark's ground truth uses.

``kinetics``: the official CSV (``label,youtube_id,time_start,time_end,split``; extra columns such as
``is_cc`` are ignored), with clips at ``{root}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4``:
class folders named by the label exactly as the CSV spells it, spaces included. ``uri`` may name one CSV
(the root is its folder) or a root folder, in which case every one of ``train.csv``, ``validate.csv``,
``val.csv`` and ``test.csv`` present there is read. The ``split`` column decides the split (``train``,
``validate``/``val``, ``test``). ``video_id`` is the clip's file name without extension, unique in Kinetics.
Every row needs a label (the unlabelled test CSVs of some releases cannot be used for training).

``manifest``: a CSV or Parquet file with columns ``uri,label`` and optionally ``split``. Relative URIs are
resolved against the manifest's folder; absolute paths, ``file://`` and ``s3://`` URIs are kept. Without a
``split`` column every video is in ``train``. ``video_id`` is the URI relative to the manifest's folder
without extension (``walk/clip_001``), or the whole URI without extension for a video outside that folder.

For Kinetics and manifests the class list is the sorted set of labels found.

Format detection (``format=None``)
----------------------------------
* a ``.parquet`` file: ``manifest``;
* a ``.csv`` file: ``kinetics`` if its header has ``youtube_id``, ``time_start`` and ``time_end``, ``manifest``
  if it has ``uri``;
* a folder: ``ucf101`` if it holds ``classInd.txt``, ``kinetics`` if it holds one of the Kinetics CSV names;
* anything else is a :class:`ManifestError` saying what was looked for.

Validation split
----------------
When no row is in ``val`` (always for UCF-101), :func:`carve_validation` moves ``round(0.1 * n)`` (halves up)
of each class's ``n`` training videos to ``val``, at least one when ``n >= 2`` and never the last one, chosen
by a generator seeded with ``(seed, crc32(label))`` over the class's videos sorted by ``video_id``: the same
videos for the same dataset, whatever other classes hold.

Problems
--------
Problems with the rows -- missing files, labels not in the class list, empty labels, unknown split names,
malformed lines, duplicate ids -- are collected over the whole dataset and raised together in one
:class:`ManifestError`. ``check_files`` lists the videos' common folder once (one listing, paginated on S3)
rather than asking for every file.
"""

from __future__ import annotations

import io
import json
import posixpath
import zlib
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from raycondi.video.storage import (
    StorageError,
    StorageOptions,
    exists,
    join,
    list_files,
    open_input,
    read_bytes,
    read_lines,
    resolve,
)

__all__ = [
    "FORMATS",
    "KINETICS_CSVS",
    "MAX_LISTED_PROBLEMS",
    "SPLITS",
    "VAL_FRACTION",
    "VAL_SEED",
    "ManifestError",
    "carve_validation",
    "classes_of",
    "detect_format",
    "read_dataset",
]

FORMATS: tuple[str, ...] = ("ucf101", "kinetics", "manifest")
SPLITS: tuple[str, ...] = ("train", "val", "test")
KINETICS_CSVS: tuple[str, ...] = ("train.csv", "validate.csv", "val.csv", "test.csv")
VAL_FRACTION = 0.1
VAL_SEED = 0
MAX_LISTED_PROBLEMS = 20

_CLASSES_KEY = b"raycondi.classes"
_KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
_SPLIT_NAMES = {"train": "train", "val": "val", "validate": "val", "validation": "val", "test": "test"}
_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("uri", pa.string()),
        ("label", pa.string()),
        ("label_index", pa.int32()),
        ("split", pa.string()),
    ]
)


class ManifestError(ValueError):
    """A dataset could not be read; ``problems`` lists every problem found, the message the first few (one line
    when there is one)."""

    def __init__(self, uri: str, problems: list[str]) -> None:
        self.uri = uri
        self.problems = list(problems)
        if len(self.problems) == 1:
            super().__init__(f"{uri}: {self.problems[0]}")
            return
        shown = "".join(f"\n  - {p}" for p in self.problems[:MAX_LISTED_PROBLEMS])
        more = len(self.problems) - MAX_LISTED_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{uri}: {len(self.problems)} problem(s){shown}{tail}")

    def __reduce__(self):
        return (type(self), (self.uri, self.problems))


@dataclass(frozen=True)
class _Row:
    video_id: str
    uri: str
    label: str
    split: str
    source: str  # "file:line", for messages


@dataclass
class _Parsed:
    rows: list[_Row] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_dataset(
    uri: str,
    format: str | None = None,
    storage: StorageOptions | None = None,
    *,
    split: int = 1,
    check_files: bool = True,
) -> pa.Table:
    """Read the dataset at ``uri`` into a video table (see the module docstring for layouts and columns).

    ``format`` is ``"ucf101"``, ``"kinetics"`` or ``"manifest"``, detected when ``None``; ``split`` picks
    UCF-101's ``trainlist0N``/``testlist0N``; ``check_files`` lists the files once and reports every video
    that is not there. Raises :class:`ManifestError` listing every problem at once, and
    :class:`~raycondi.video.storage.StorageError` when an index file cannot be read.
    """
    format = format or detect_format(uri, storage)
    if format == "ucf101":
        parsed = _read_ucf101(uri, storage, split)
    elif format == "kinetics":
        parsed = _read_kinetics(uri, storage)
    elif format == "manifest":
        parsed = _read_manifest(uri, storage)
    else:
        raise ValueError(f"unknown dataset format {format!r}; expected one of {', '.join(FORMATS)}")
    problems = parsed.problems + _duplicate_problems(parsed.rows) + _label_problems(parsed.rows, parsed.classes)
    if check_files:
        problems += _missing_files(parsed.rows, storage)
    if problems:
        raise ManifestError(uri, problems)
    if not parsed.rows:
        raise ManifestError(uri, ["no videos listed"])
    table = _to_table(parsed.rows, parsed.classes)
    if not pc.any(pc.equal(table["split"], "val")).as_py():
        table = carve_validation(table)
    return table


def detect_format(uri: str, storage: StorageOptions | None = None) -> str:
    """The layout of ``uri``, by the rule in the module docstring."""
    lower = uri.lower()
    if lower.endswith(".parquet"):
        return "manifest"
    if lower.endswith(".csv"):
        header = _csv_header(uri, storage)
        if {"youtube_id", "time_start", "time_end"} <= header:
            return "kinetics"
        if "uri" in header:
            return "manifest"
        raise ManifestError(
            uri,
            [f"CSV header {sorted(header)} is neither Kinetics (youtube_id,time_start,time_end) nor a manifest (uri)"],
        )
    if exists(join(uri, "classInd.txt"), storage):
        return "ucf101"
    if any(exists(join(uri, name), storage) for name in KINETICS_CSVS):
        return "kinetics"
    if not exists(uri, storage):
        bucket = uri[len("s3://"):].split("/", 1)[0] if uri.startswith("s3://") else None
        missing = bucket is not None and not exists(f"s3://{bucket}", storage)
        raise ManifestError(uri, [f"no such bucket {bucket!r}" if missing else "no such file, folder or prefix"])
    raise ManifestError(
        uri,
        [
            "cannot tell the dataset format: expected a .csv/.parquet manifest, a folder with classInd.txt (UCF-101) "
            f"or a folder with one of {', '.join(KINETICS_CSVS)} (Kinetics); or pass format="
        ],
    )


def classes_of(table: pa.Table) -> list[str]:
    """The class list of a table from :func:`read_dataset`; ``label_index`` indexes into it."""
    metadata = table.schema.metadata or {}
    if _CLASSES_KEY not in metadata:
        raise ValueError("table has no class list; it was not made by read_dataset")
    return json.loads(metadata[_CLASSES_KEY])


def carve_validation(table: pa.Table, fraction: float = VAL_FRACTION, seed: int = VAL_SEED) -> pa.Table:
    """Move a stratified ``fraction`` of each class's ``train`` rows to ``val`` (rule in the module docstring)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    splits = table["split"].to_pylist()
    by_label: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for i, (video_id, label, split) in enumerate(
        zip(table["video_id"].to_pylist(), table["label"].to_pylist(), splits, strict=True)
    ):
        if split == "train":
            by_label[label].append((video_id, i))
    for label, members in by_label.items():
        n = len(members)
        n_val = min(max(int(n * fraction + 0.5), 1 if n >= 2 and fraction > 0 else 0), n - 1)
        rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        chosen = rng.choice(n, size=n_val, replace=False) if n_val else []
        ordered = sorted(members)
        for k in chosen:
            splits[ordered[k][1]] = "val"
    table = table.set_column(table.schema.get_field_index("split"), "split", pa.array(splits, pa.string()))
    return _sorted(table)


# --- layouts ---------------------------------------------------------------------------------------------


def _read_ucf101(root: str, storage: StorageOptions | None, split: int) -> _Parsed:
    if split < 1:
        raise ValueError(f"UCF-101 split must be >= 1, got {split}")
    parsed = _Parsed()
    class_ind = "classInd.txt"
    for number, line in read_lines(join(root, class_ind), storage):
        index, _, name = line.partition(" ")
        if not index.isdigit() or not name.strip():
            parsed.problems.append(f"{class_ind}:{number}: expected '<index> <class name>', got {line!r}")
        elif int(index) != len(parsed.classes) + 1:
            parsed.problems.append(
                f"{class_ind}:{number}: index {index} out of order (expected {len(parsed.classes) + 1})"
            )
        else:
            parsed.classes.append(name.strip())
    position = {c: i + 1 for i, c in enumerate(parsed.classes)}
    by_fold: dict[str, list[str]] = defaultdict(list)
    for c in parsed.classes:
        by_fold[c.casefold()].append(c)

    def canonical(folder: str) -> str:
        matches = by_fold.get(folder.casefold(), [])
        return folder if folder in position or len(matches) != 1 else matches[0]

    for list_name, split_name in ((f"trainlist{split:02d}.txt", "train"), (f"testlist{split:02d}.txt", "test")):
        for number, line in read_lines(join(root, list_name), storage):
            source = f"{list_name}:{number}"
            path, _, index = line.partition(" ")
            folder, slash, filename = path.partition("/")
            if not slash or not filename:
                parsed.problems.append(f"{source}: expected '<class>/<file>', got {line!r}")
                continue
            label = canonical(folder)
            index = index.strip()
            if index and label in position and index != str(position[label]):
                parsed.problems.append(
                    f"{source}: class index {index} disagrees with classInd.txt ({label} is {position[label]})"
                )
            video_id = posixpath.splitext(posixpath.basename(path))[0]
            parsed.rows.append(_Row(video_id, join(root, path), label, split_name, source))
    return parsed


def _read_kinetics(uri: str, storage: StorageOptions | None) -> _Parsed:
    if uri.lower().endswith(".csv"):
        root, csvs = _parent(uri), [uri]
    else:
        root = uri
        csvs = [join(uri, name) for name in KINETICS_CSVS if exists(join(uri, name), storage)]
        if not csvs:
            raise ManifestError(uri, [f"no Kinetics CSV ({', '.join(KINETICS_CSVS)}) in this folder"])
    parsed = _Parsed()
    labels = set()
    for csv_uri in csvs:
        table = _read_csv(csv_uri, storage)
        name = posixpath.basename(csv_uri)
        missing = [c for c in _KINETICS_COLUMNS if c not in table.column_names]
        if missing:
            parsed.problems.append(f"{name}: missing column(s) {', '.join(missing)}")
            continue
        columns = zip(*(table[c].to_pylist() for c in _KINETICS_COLUMNS), strict=True)
        for number, (label, youtube_id, start, end, split) in enumerate(columns, start=2):
            source = f"{name}:{number}"
            split_name = _split_name(split, source, parsed.problems)
            if not label:
                parsed.problems.append(f"{source}: empty label")
                continue
            if start is None or end is None or not youtube_id:
                parsed.problems.append(f"{source}: youtube_id, time_start and time_end are required")
                continue
            video_id = f"{youtube_id}_{int(start):06d}_{int(end):06d}"
            labels.add(label)
            if split_name:
                parsed.rows.append(_Row(video_id, join(root, label, f"{video_id}.mp4"), label, split_name, source))
    parsed.classes = sorted(labels)
    return parsed


def _read_manifest(uri: str, storage: StorageOptions | None) -> _Parsed:
    name = posixpath.basename(uri)
    if uri.lower().endswith(".parquet"):
        try:
            table = pq.read_table(io.BytesIO(read_bytes(uri, storage)))
        except pa.ArrowInvalid as error:
            raise ManifestError(uri, [f"not a readable Parquet file: {error}"]) from error
    else:
        table = _read_csv(uri, storage)
    missing = [c for c in ("uri", "label") if c not in table.column_names]
    if missing:
        raise ManifestError(uri, [f"missing column(s) {', '.join(missing)}; a manifest has uri,label[,split]"])
    base = _parent(uri)
    uris = table["uri"].to_pylist()
    labels = table["label"].to_pylist()
    splits = table["split"].to_pylist() if "split" in table.column_names else ["train"] * len(uris)
    parsed = _Parsed()
    for number, (video_uri, label, split) in enumerate(zip(uris, labels, splits, strict=True), start=2):
        source = f"{name}:{number}" if not uri.lower().endswith(".parquet") else f"{name} row {number - 2}"
        split_name = _split_name(split, source, parsed.problems)
        if not video_uri:
            parsed.problems.append(f"{source}: empty uri")
            continue
        if label is None or not str(label).strip():
            parsed.problems.append(f"{source}: empty label")
            continue
        absolute = "://" in video_uri or video_uri.startswith("/")
        full = video_uri if absolute else _resolve_relative(base, video_uri)
        prefix = base.rstrip("/") + "/"
        relative = full[len(prefix) :] if full.startswith(prefix) else full
        if split_name:
            parsed.rows.append(_Row(posixpath.splitext(relative)[0], full, str(label).strip(), split_name, source))
    parsed.classes = sorted({r.label for r in parsed.rows})
    return parsed


# --- checks ----------------------------------------------------------------------------------------------


def _duplicate_problems(rows: list[_Row]) -> list[str]:
    first: dict[str, str] = {}
    problems = []
    for row in rows:
        if row.video_id in first:
            problems.append(f"{row.source}: duplicate video_id {row.video_id!r} (first at {first[row.video_id]})")
        else:
            first[row.video_id] = row.source
    return problems


def _label_problems(rows: list[_Row], classes: list[str]) -> list[str]:
    known = set(classes)
    return [f"{r.source}: unknown label {r.label!r}" for r in rows if r.label not in known]


def _missing_files(rows: list[_Row], storage: StorageOptions | None) -> list[str]:
    """Rows whose file is absent, from one recursive listing of the deepest folder holding all of them
    (one per bucket or filesystem when they are spread over several)."""
    listed: set[str] = set()
    for root in _listing_roots([r.uri for r in rows]):
        try:
            listed.update(resolve(u, storage)[1] for u in list_files(root, options=storage))
        except StorageError:  # the folder itself is missing: every file under it is reported below
            pass
    return [f"{r.source}: missing file {r.uri}" for r in rows if resolve(r.uri, storage)[1] not in listed]


def _listing_roots(uris: list[str]) -> list[str]:
    """The deepest folder holding all of ``uris``, one per store (an S3 bucket, ``file://``, local paths)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for uri in uris:
        groups[_store(uri)].append(posixpath.dirname(uri) + "/")
    roots = []
    for store, folders in groups.items():
        common = posixpath.commonprefix(folders)
        common = common[: common.rfind("/")]  # back to a whole folder name
        roots.append(common if len(common) > len(store) else store)
    return roots


def _store(uri: str) -> str:
    """The root no listing can go above: ``s3://bucket``, ``file:///``, ``/`` or ``""`` (relative paths)."""
    if uri.startswith("s3://"):
        return "s3://" + uri[len("s3://") :].split("/", 1)[0]
    if uri.startswith("file://"):
        return "file:///"
    return "/" if uri.startswith("/") else ""


# --- helpers ---------------------------------------------------------------------------------------------


def _split_name(value: object, source: str, problems: list[str]) -> str | None:
    name = _SPLIT_NAMES.get(str(value).strip().lower()) if value is not None else None
    if name is None:
        problems.append(f"{source}: unknown split {value!r}; expected train, val (validate) or test")
    return name


def _csv_header(uri: str, storage: StorageOptions | None) -> set[str]:
    """The column names on a CSV file's first line, read without reading the whole file."""
    with open_input(uri, storage) as f:
        first = f.read(1 << 16).decode("utf-8-sig", errors="replace").splitlines()[:1]
    return {name.strip().strip('"') for name in first[0].split(",")} if first else set()


def _read_csv(uri: str, storage: StorageOptions | None) -> pa.Table:
    strings = {c: pa.string() for c in ("uri", "label", "split", "youtube_id")}
    try:
        return pacsv.read_csv(
            io.BytesIO(read_bytes(uri, storage)),
            convert_options=pacsv.ConvertOptions(
                column_types={**strings, "time_start": pa.float64(), "time_end": pa.float64()}
            ),
        )
    except pa.ArrowInvalid as error:
        raise ManifestError(uri, [f"not a readable CSV file: {error}"]) from error


def _parent(uri: str) -> str:
    """The folder holding the file ``uri`` (``"."`` for a bare local file name)."""
    return posixpath.dirname(uri) or "."


def _resolve_relative(base: str, relative: str) -> str:
    """``relative`` against the folder URI ``base``, normalising ``.`` and ``..``."""
    scheme, sep, path = base.rpartition("://") if "://" in base else ("", "", base)
    return f"{scheme}{sep}{posixpath.normpath(posixpath.join(path, relative))}"


def _to_table(rows: list[_Row], classes: list[str]) -> pa.Table:
    index = {c: i for i, c in enumerate(classes)}
    table = pa.table(
        {
            "video_id": [r.video_id for r in rows],
            "uri": [r.uri for r in rows],
            "label": [r.label for r in rows],
            "label_index": [index[r.label] for r in rows],
            "split": [r.split for r in rows],
        },
        schema=_SCHEMA.with_metadata({_CLASSES_KEY: json.dumps(classes).encode()}),
    )
    return _sorted(table)


def _sorted(table: pa.Table) -> pa.Table:
    order = pc.index_in(table["split"], pa.array(SPLITS))
    keyed = table.append_column("_order", order)
    return keyed.sort_by([("_order", "ascending"), ("video_id", "ascending")]).drop_columns("_order")
