"""The labelling job's output side: the Parquet writer (:class:`LabelSink`) and the resume check
(:func:`labelled_ids`).

Kept apart from the stages and free of torch on purpose: Ray Data runs the sink in
plain worker processes, which then start without importing torch.

Publishing: a file appears whole or not at all -- on S3 by a single PUT (pyarrow switches to a multipart
upload for large files, which becomes visible only when completed), locally by writing ``.<name>.tmp``
and renaming it. File names are ``part-{run_id}-{write task index:06d}.parquet``: a new run never
overwrites an old file, and a retried write task replaces its own file with the same rows.
"""

from __future__ import annotations

import io
import posixpath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.data import Datasink
from ray.data.block import BlockAccessor

from raycondi import strategies
from raycondi.pipeline.config import LabelError
from raycondi.pipeline.schema import OUTPUT_SCHEMA, STATUS_OK, output_dataset, output_files
from raycondi.video.storage import StorageOptions, join, resolve, write_bytes

__all__ = ["LabelSink", "labelled_ids", "output_files", "publish"]


def labelled_ids(output: str, storage: StorageOptions | None = None) -> set[str]:
    """The ``video_id`` of every row already written under ``output`` (ok and error rows alike)."""
    files = output_files(output, storage)
    if not files:
        return set()
    try:
        ids = output_dataset(files, storage).to_table(columns=["video_id"])
    except (OSError, pa.ArrowException) as error:
        raise LabelError(output, f"cannot read the existing output to resume: {error}") from None
    return set(ids["video_id"].to_pylist())


def publish(uri: str, data: bytes, storage: StorageOptions | None) -> None:
    """Make ``uri`` hold ``data`` all at once: one S3 PUT, or a local temporary file renamed into place."""
    filesystem, path = resolve(uri, storage)
    if not isinstance(filesystem, pafs.LocalFileSystem):
        write_bytes(uri, data, storage)
        return
    directory, name = posixpath.split(path)
    temporary = posixpath.join(directory, f".{name}.tmp")
    write_bytes(temporary, data)
    filesystem.move(temporary, path)


class LabelSink(Datasink[dict[str, Any]]):
    """Writes each write task's rows as one Parquet file ``part-{run_id}-{task:06d}.parquet``, atomically.

    Each task returns its counts; :meth:`on_write_complete` (on the driver) adds them up.
    """

    def __init__(self, output: str, run_id: str, rows_per_file: int, storage: StorageOptions | None = None) -> None:
        self.output, self.run_id, self.rows_per_file, self.storage = output, run_id, rows_per_file, storage
        self.counts: dict[str, int] = {}
        self.files: list[str] = []

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_file

    def get_name(self) -> str:
        return "LabelParquet"

    def write(self, blocks, ctx) -> dict[str, Any]:
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        tables = [t.select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA) for t in tables if t.num_rows]
        if not tables:
            return {"counts": {}, "files": []}
        table = pa.concat_tables(tables)
        table = table.set_column(table.schema.get_field_index("run_id"), "run_id",
                                 pa.array([self.run_id] * table.num_rows, pa.string()))
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        uri = join(self.output, f"part-{self.run_id}-{ctx.task_idx:06d}.parquet")
        publish(uri, buffer.getvalue(), self.storage)
        ok = pc.equal(table["status"], STATUS_OK)
        ok_rows = table.filter(ok)
        samplers = pa.array([s.name for s in strategies.STRATEGIES if s.needs_student], pa.string())
        scored = pc.is_in(ok_rows["strategy"], value_set=samplers)
        counts = {
            "videos_ok": ok_rows.num_rows,
            "videos_error": table.num_rows - ok_rows.num_rows,
            "dense_clips": pc.sum(ok_rows["num_clips"]).as_py() or 0,
            "clips_scored": pc.sum(ok_rows.filter(scored)["num_clips"]).as_py() or 0,
            "clips_to_teacher": pc.sum(table["teacher_clips"]).as_py() or 0,
        }
        return {"counts": counts, "files": [uri]}

    def on_write_complete(self, write_result) -> None:
        for result in write_result.write_returns:
            for key, value in result["counts"].items():
                self.counts[key] = self.counts.get(key, 0) + value
            self.files += result["files"]


