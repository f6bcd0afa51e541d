"""The labelling job's input: the videos to label, as a table ``(video_id, uri)``, from a prefix or a dataset.

Torch-free: the driver lists the input before any actor starts, and a listing problem is a
:class:`~raycondi.pipeline.config.LabelError` naming the URI.
"""

from __future__ import annotations

import posixpath
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from raycondi.datasets.manifests import ManifestError, detect_format, read_dataset
from raycondi.pipeline.config import LabelError
from raycondi.video.storage import StorageError, StorageOptions, list_files

__all__ = ["VIDEO_SUFFIXES", "list_videos"]

VIDEO_SUFFIXES: tuple[str, ...] = (
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp",
)


def list_videos(uri: str, storage: StorageOptions | None = None, *, split: str | None = None) -> pa.Table:
    """The videos to label as a table ``(video_id, uri)``, sorted by ``video_id``.

    A dataset (CSV/Parquet manifest, UCF-101 or Kinetics layout; :func:`detect_format`) gives its rows,
    filtered to ``split`` when given; missing files are not checked here, they become error rows.
    Anything else is a prefix: every file under it with a :data:`VIDEO_SUFFIXES` extension, ``video_id``
    being its path under the prefix without extension. Raises :class:`LabelError` naming ``uri`` when
    nothing can be listed or no video is found.
    """
    try:
        fmt = detect_format(uri, storage)
    except ManifestError as error:
        if uri.lower().endswith((".csv", ".parquet")):
            raise LabelError(uri, f"unusable manifest: {error}") from None
        fmt = None
    except StorageError as error:
        raise LabelError(uri, f"cannot read the input: {error.reason}") from None
    if fmt is not None:
        try:
            table = read_dataset(uri, fmt, storage, check_files=False)
        except (ManifestError, StorageError) as error:
            raise LabelError(uri, f"unusable {fmt} dataset: {error}") from None
        if split is not None:
            table = table.filter(pc.equal(table["split"], split))
        videos = table.select(["video_id", "uri"])
    else:
        try:
            files = list_files(uri, VIDEO_SUFFIXES, storage)
        except StorageError as error:
            raise LabelError(uri, f"cannot list the input prefix: {error.reason}") from None
        root = uri.rstrip("/") + "/"
        ids = [posixpath.splitext(f[len(root):] if f.startswith(root) else posixpath.basename(f))[0] for f in files]
        duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)
        if duplicates:
            raise LabelError(uri, f"several files share a video id (same path, other extension): {duplicates[:5]}")
        videos = pa.table({"video_id": pa.array(ids, pa.string()), "uri": pa.array(files, pa.string())})
    if videos.num_rows == 0:
        what = f"in split {split!r}" if split else f"with an extension among {', '.join(VIDEO_SUFFIXES)}"
        raise LabelError(uri, f"no video found {what}")
    return videos.sort_by("video_id")
