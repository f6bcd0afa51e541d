"""Clip shards: decode a dataset once, in parallel with Ray Data, into Parquet files of clips for training.

:func:`prepare` reads a dataset layout (:func:`~raycondi.datasets.manifests.read_dataset`) and runs::

    from_arrow(videos, one block per video)         one row per video
      -> map_batches(decode_videos, batch_size=1)   Ray tasks; one video per call, clip rows out
      -> write_datasink(ShardSink)                  Parquet shards per split; failures back to the driver

and writes::

    out/dataset.json          class names, clip spec, frame shape, videos/clips/failures per split
    out/train/part-*.parquet  one row per clip (also out/val/, out/test/; a split with no clip has no folder)
    out/failed.parquet        video_id, uri, split, error: one row per video that could not be decoded

A shard row is ``video_id, clip_index, num_clips, label_index, start_s, end_s, keyframe_offset, frames,
frames_shape`` (``keyframe_offset``: frames from the keyframe at or before the clip's first frame to it, -1 for
a video that cannot be sought; ``evaluate --candidates keyframes`` needs it):
``frames`` holds the clip's uint8 RGB pixels as bytes in ``(T, H, W, 3)`` order and ``frames_shape`` that
shape (the same for every row of a run; it is also in ``dataset.json``). :func:`frames_to_numpy` turns
a batch of rows (a pyarrow table or a Ray Data numpy batch) into one ``(B, T, H, W, 3)`` array, and
:func:`iter_clip_batches` streams a split's shards as numpy batches without Ray.

Design notes
------------
* **Decode once, separate failures without a second pass.** A video that fails
  (:class:`~raycondi.video.decode.VideoDecodeError`, which includes a missing or unreadable file) becomes a
  single row with ``error`` set and no pixels, travelling in the same stream as the clips. The sink routes
  rows as it writes them: clips to the split's shard file, failure rows (a few strings) back to the driver
  as the write task's return value, from which ``failed.parquet`` is written. Nothing is decoded twice, no
  ``filter`` re-executes the pipeline, and pixels are never materialised: they stream from the decode tasks
  through the object store (under Ray Data's backpressure) to the write tasks.
* **A video is all or nothing.** :func:`~raycondi.video.decode.iter_clips` may raise after yielding clips
  (truncation is found at the end), and ``num_clips`` is only known at the end. So each video's clips are
  first written to a ``SpooledTemporaryFile`` (in memory up to ``_SPOOL_BYTES``, then on the worker's
  disk): memory stays bounded for any length, a failed video leaves no partial clips, and every row gets
  its ``num_clips``.
* **Batch sizes.** The decode stage takes one video per call (``batch_size=1``; videos differ in length
  by orders of magnitude, so finer units balance better) and yields Arrow tables of at most
  ``_BATCH_BYTES`` of pixels. Write tasks bundle their input to ``_SHARD_BYTES``
  (``Datasink.min_bytes_per_write``), so shard files have a predictable size whatever the videos' lengths,
  with row groups of ``_ROWS_PER_GROUP`` clips for streaming readers. Decode runs as Ray tasks (it is
  stateless), one CPU each.
* **Fresh output.** ``out`` must be empty: mixing shards of two runs would silently duplicate clips.
  ``dataset.json`` is written last, so its presence marks a complete run.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import ray
from ray.data import Datasink
from ray.data.block import BlockAccessor

from raycondi.datasets.manifests import SPLITS, classes_of, read_dataset
from raycondi.video.decode import ClipSpec, DecodeLimits, VideoDecodeError, iter_clips
from raycondi.video.seek import keyframe_offsets
from raycondi.video.storage import (
    StorageError,
    StorageOptions,
    check_endpoint,
    exists,
    join,
    list_files,
    open_output,
    read_bytes,
    resolve,
    write_bytes,
)

__all__ = [
    "CLIP_SCHEMA",
    "FAILED_SCHEMA",
    "PrepareSummary",
    "ShardSink",
    "decode_videos",
    "frames_to_numpy",
    "iter_clip_batches",
    "prepare",
    "read_summary",
]

_SPOOL_BYTES = 256 << 20  # a video's clips stay in memory up to this, then spill to local disk
_BATCH_BYTES = 64 << 20  # pixels per table yielded by the decode stage
_SHARD_BYTES = 256 << 20  # input bundled per write task (about one shard file per split present in it)
_ROWS_PER_GROUP = 64  # clips per Parquet row group
_MAX_INPUT_BLOCKS = 8192  # one block per video up to this many videos

CLIP_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("clip_index", pa.int32()),
        ("num_clips", pa.int32()),
        ("label_index", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("keyframe_offset", pa.int32()),
        ("frames", pa.binary()),
        ("frames_shape", pa.list_(pa.int32(), 4)),
    ]
)
FAILED_SCHEMA = pa.schema(
    [("video_id", pa.string()), ("uri", pa.string()), ("split", pa.string()), ("error", pa.string())]
)
# What the decode stage emits: shard columns, plus the routing columns the sink consumes.
_DECODED_SCHEMA = pa.schema(list(CLIP_SCHEMA) + [("split", pa.string()), ("uri", pa.string()), ("error", pa.string())])


@dataclass(frozen=True)
class PrepareSummary:
    """What :func:`prepare` wrote; also the content of ``out/dataset.json`` (see :func:`read_summary`)."""

    dataset: str
    out: str
    classes: tuple[str, ...]
    clip: ClipSpec
    frames_shape: tuple[int, int, int, int]
    videos: dict[str, int]  # decoded videos per split
    clips: dict[str, int]  # clip rows per split
    failed: int  # videos listed in failed.parquet

    def to_json(self) -> str:
        record = asdict(self)
        del record["out"]
        return json.dumps(record, indent=2)


def prepare(
    dataset: str,
    out: str,
    *,
    format: str | None = None,
    clip: ClipSpec = ClipSpec(),
    storage: StorageOptions | None = None,
    limits: DecodeLimits | None = None,
) -> PrepareSummary:
    """Decode every video of ``dataset`` once into clip shards under ``out`` (layout in the module docstring).

    ``format`` is passed to :func:`~raycondi.datasets.manifests.read_dataset` (detected when ``None``).
    Videos that fail to decode are listed in ``out/failed.parquet`` and counted in the summary; they do not
    fail the run. Raises ``ManifestError`` for a dataset with problems and ``StorageError`` when ``out`` is
    not empty or the S3 endpoint cannot be connected to. Runs on the current Ray cluster (``ray.init()`` is called when none is connected).
    """
    dataset, out = _absolute(dataset), _absolute(out)
    check_endpoint((dataset, out), storage)
    if exists(out, storage) and any(not f[len(out):].lstrip("/").startswith(("_", "."))  # not data: _logs/
                                    for f in list_files(out, options=storage)):
        raise StorageError(out, "output folder is not empty; prepare writes into a new folder")
    videos = read_dataset(dataset, format, storage)
    classes = tuple(classes_of(videos))
    frames_shape = clip.frame_shape

    sink = ShardSink(out, storage)
    (
        ray.data.from_arrow(videos, override_num_blocks=min(videos.num_rows, _MAX_INPUT_BLOCKS))
        .map_batches(
            decode_videos,
            batch_size=1,
            batch_format="pyarrow",
            fn_kwargs={"clip": clip, "limits": limits, "storage": storage},
            num_cpus=1,
        )
        .write_datasink(sink)
    )

    failed = pa.Table.from_pylist(sink.failures, schema=FAILED_SCHEMA).sort_by("video_id")
    with open_output(join(out, "failed.parquet"), storage) as stream:
        pq.write_table(failed, stream)
    summary = PrepareSummary(
        dataset=dataset,
        out=out,
        classes=classes,
        clip=clip,
        frames_shape=frames_shape,
        videos={s: sink.videos[s] for s in SPLITS},
        clips={s: sink.clips[s] for s in SPLITS},
        failed=failed.num_rows,
    )
    write_bytes(join(out, "dataset.json"), summary.to_json().encode(), storage)
    return summary


def decode_videos(
    batch: pa.Table, *, clip: ClipSpec, limits: DecodeLimits | None, storage: StorageOptions | None
) -> Iterator[pa.Table]:
    """The decode stage: manifest rows in (``video_id, uri, label_index, split``), clip rows out.

    Yields tables of at most ``_BATCH_BYTES`` of pixels with ``error`` null, or, for a video that failed to
    decode, one row with ``error`` set and no pixels.
    """
    for video in batch.select(["video_id", "uri", "label_index", "split"]).to_pylist():
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            try:
                spans = _spool_clips(video["uri"], spool, clip, limits, storage)
            except VideoDecodeError as error:
                yield _failure_row(video, error.reason)
                continue
            spool.seek(0)
            yield from _clip_tables(video, spans, spool, clip)


class ShardSink(Datasink[dict[str, Any]]):
    """Ray Data datasink writing clip rows to ``out/{split}/part-*.parquet`` and collecting failure rows.

    Each write task writes one Parquet file per split present in its input and returns its counts and
    failure rows; :meth:`on_write_complete` (on the driver) adds them up into ``videos``, ``clips`` and
    ``failures``.
    """

    def __init__(self, out: str, storage: StorageOptions | None = None) -> None:
        self.out = out
        self.storage = storage
        self.run_id = uuid.uuid4().hex[:12]
        self.videos: Counter[str] = Counter()
        self.clips: Counter[str] = Counter()
        self.failures: list[dict[str, str]] = []

    @property
    def min_bytes_per_write(self) -> int:
        return _SHARD_BYTES

    def get_name(self) -> str:
        return "ClipShards"

    def write(self, blocks, ctx) -> dict[str, Any]:
        files: dict[str, _ShardFile] = {}
        videos: Counter[str] = Counter()
        clips: Counter[str] = Counter()
        failures: list[dict[str, str]] = []
        try:
            for block in blocks:
                table = BlockAccessor.for_block(block).to_arrow()
                failed = pc.is_valid(table["error"])
                failures += table.filter(failed).select(FAILED_SCHEMA.names).to_pylist()
                table = table.filter(pc.invert(failed))
                for split in pc.unique(table["split"]).to_pylist():
                    rows = table.filter(pc.equal(table["split"], split)).select(CLIP_SCHEMA.names).cast(CLIP_SCHEMA)
                    if split not in files:
                        name = f"part-{self.run_id}-{ctx.task_idx:06d}.parquet"
                        files[split] = _ShardFile(join(self.out, split, name), self.storage)
                    files[split].write(rows)
                    clips[split] += rows.num_rows
                    videos[split] += pc.sum(pc.equal(rows["clip_index"], 0)).as_py() or 0
        finally:
            for file in files.values():
                file.close()
        return {"videos": dict(videos), "clips": dict(clips), "failures": failures}

    def on_write_complete(self, write_result) -> None:
        for result in write_result.write_returns:
            self.videos.update(result["videos"])
            self.clips.update(result["clips"])
            self.failures += result["failures"]


class _ShardFile:
    """One shard file being written, its rows gathered into row groups of ``_ROWS_PER_GROUP`` clips."""

    def __init__(self, uri: str, storage: StorageOptions | None) -> None:
        self._stream = open_output(uri, storage)
        self._writer = pq.ParquetWriter(self._stream, CLIP_SCHEMA)
        self._pending: list[pa.Table] = []
        self._rows = 0

    def write(self, rows: pa.Table) -> None:
        self._pending.append(rows)
        self._rows += rows.num_rows
        if self._rows >= _ROWS_PER_GROUP:
            table = pa.concat_tables(self._pending)
            whole = self._rows - self._rows % _ROWS_PER_GROUP
            self._writer.write_table(table.slice(0, whole), row_group_size=_ROWS_PER_GROUP)
            self._pending, self._rows = [table.slice(whole)], self._rows - whole

    def close(self) -> None:
        if self._rows:
            self._writer.write_table(pa.concat_tables(self._pending))
        self._writer.close()
        self._stream.close()


def frames_to_numpy(batch: pa.Table | pa.RecordBatch | Mapping[str, Any]) -> np.ndarray:
    """The ``frames`` of a batch of shard rows as one uint8 array ``(B, T, H, W, 3)``.

    ``batch`` is a pyarrow table or record batch (read with pyarrow; zero-copy when the frames are in one
    chunk), a Ray Data numpy batch (``{"frames": array of bytes, "frames_shape": ...}``), or a batch of
    :func:`iter_clip_batches`, whose ``frames`` already are that array.
    """
    if isinstance(batch, Mapping) and isinstance(batch["frames"], np.ndarray) and batch["frames"].ndim == 5:
        return batch["frames"]
    if isinstance(batch, pa.Table | pa.RecordBatch):
        shapes = np.asarray(batch["frames_shape"].to_pylist(), dtype=np.int64).reshape(-1, 4)
        frames = batch["frames"]
        frames = frames.combine_chunks() if isinstance(frames, pa.ChunkedArray) else frames
        offsets = np.frombuffer(frames.buffers()[1], np.int32, count=len(frames) + 1, offset=frames.offset * 4)
        pixels = (
            np.frombuffer(frames.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
            if len(frames)
            else np.empty(0, np.uint8)
        )
    else:
        shapes = np.stack([np.asarray(s, dtype=np.int64) for s in batch["frames_shape"]]).reshape(-1, 4)
        pixels = np.frombuffer(b"".join(batch["frames"]), np.uint8)
    if len(shapes) == 0:
        return np.empty((0, 0, 0, 0, 3), np.uint8)
    if (shapes != shapes[0]).any():
        raise ValueError(f"a batch mixes clip shapes {sorted({tuple(s) for s in shapes.tolist()})}")
    return pixels.reshape(len(shapes), *shapes[0])


def iter_clip_batches(
    out: str, split: str, batch_size: int = 64, storage: StorageOptions | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Stream the clips of ``split`` from the shards under ``out`` as numpy batches, without Ray.

    Batches hold at most ``batch_size`` clips (fewer at row-group ends); each maps the shard columns to
    arrays, with ``frames`` as ``(B, T, H, W, 3)`` uint8.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if not exists(join(out, split), storage):
        return
    filesystem, path = resolve(join(out, split), storage)
    shards = pads.dataset(path, filesystem=filesystem, format="parquet", schema=CLIP_SCHEMA)
    for batch in shards.to_batches(batch_size=batch_size):
        columns = {name: batch[name].to_numpy(zero_copy_only=False) for name in CLIP_SCHEMA.names[:-2]}
        yield {**columns, "frames": frames_to_numpy(batch)}


def read_summary(out: str, storage: StorageOptions | None = None) -> PrepareSummary:
    """The :class:`PrepareSummary` stored in ``out/dataset.json`` by :func:`prepare`."""
    record = json.loads(read_bytes(join(out, "dataset.json"), storage))
    return PrepareSummary(
        dataset=record["dataset"],
        out=out,
        classes=tuple(record["classes"]),
        clip=ClipSpec(**record["clip"]),
        frames_shape=tuple(record["frames_shape"]),
        videos=record["videos"],
        clips=record["clips"],
        failed=record["failed"],
    )


# --- decode stage helpers --------------------------------------------------------------------------------


def _spool_clips(
    uri: str, spool: BinaryIO, clip: ClipSpec, limits: DecodeLimits | None, storage: StorageOptions | None
) -> list[tuple[float, float, int]]:
    """Decode ``uri`` into ``spool`` (the clips' pixels back to back); return each clip's ``(start_s, end_s,
    keyframe_offset)``: the frames from the keyframe at or before the clip's first frame to it, -1 for every clip
    of a video that cannot be sought (:func:`raycondi.video.seek.keyframe_offsets`)."""
    spans = []
    for c in iter_clips(uri, clip.clip_len, clip.size, clip.stride, limits=limits, storage=storage):
        spool.write(np.ascontiguousarray(c.frames).data)
        spans.append((c.start_s, c.end_s))
    offsets = keyframe_offsets(uri, clip, limits=limits, storage=storage)
    if offsets is None or len(offsets) != len(spans):
        offsets = np.full(len(spans), -1)
    return [(start, end, int(offset)) for (start, end), offset in zip(spans, offsets, strict=True)]


def _clip_tables(
    video: dict[str, Any], spans: list[tuple[float, float, int]], spool: BinaryIO, clip: ClipSpec
) -> Iterator[pa.Table]:
    shape = clip.frame_shape
    clip_bytes = int(np.prod(shape))
    per_table = max(1, _BATCH_BYTES // clip_bytes)
    for first in range(0, len(spans), per_table):
        count = min(per_table, len(spans) - first)
        pixels = spool.read(count * clip_bytes)
        offsets = pa.py_buffer(np.arange(count + 1, dtype=np.int32) * clip_bytes)
        frames = pa.Array.from_buffers(pa.binary(), count, [None, offsets, pa.py_buffer(pixels)])
        starts, ends, offsets = zip(*spans[first : first + count], strict=True)
        yield pa.table(
            {
                "video_id": [video["video_id"]] * count,
                "clip_index": range(first, first + count),
                "num_clips": [len(spans)] * count,
                "label_index": [video["label_index"]] * count,
                "start_s": starts,
                "end_s": ends,
                "keyframe_offset": offsets,
                "frames": frames,
                "frames_shape": pa.FixedSizeListArray.from_arrays(pa.array(np.tile(shape, count), pa.int32()), 4),
                "split": [video["split"]] * count,
                "uri": [video["uri"]] * count,
                "error": pa.nulls(count, pa.string()),
            },
            schema=_DECODED_SCHEMA,
        )


def _failure_row(video: dict[str, Any], reason: str) -> pa.Table:
    row = {name: None for name in _DECODED_SCHEMA.names}
    row.update(
        video_id=video["video_id"],
        label_index=video["label_index"],
        split=video["split"],
        uri=video["uri"],
        error=reason,
    )
    return pa.Table.from_pylist([row], schema=_DECODED_SCHEMA)


def _absolute(uri: str) -> str:
    """Local relative paths made absolute, so that Ray workers with another working directory find them."""
    return uri if "://" in uri or os.path.isabs(uri) else os.path.abspath(uri)
