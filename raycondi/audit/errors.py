"""Error rows grouped by reason: the same failure on a thousand videos is one line of the report, not a thousand.

An ``error`` cell is a reason such as ``corrupt or unreadable video data near 12.48 s (Invalid data found...)``;
some reasons carry the video's URI or its own numbers (a time, a resolution, a frame count). :func:`reason_key`
drops what is particular to the video so that equal failures share a key: the URI (and a ``"{uri}: "`` prefix),
then every number that does not end a name (``12.48`` and ``640x480`` become ``#``, ``h264`` stays), then runs of white space.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow.compute as pc

from raycondi.pipeline.schema import STATUS_ERROR, output_dataset
from raycondi.video.storage import StorageOptions

__all__ = ["ErrorGroup", "ErrorGroups", "error_groups", "reason_key"]

# a number that does not end a name (h264, x265 stay): 12, -0.5, 1e-3, and a size 640x480 as one number
_NUMBER = re.compile(r"(?<![A-Za-z_\d.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?:x\d+)?")
_SPACE = re.compile(r"\s+")
EXAMPLES = 3  # video ids shown per group


def reason_key(error: str | None, uri: str | None = None) -> str:
    """``error`` with the video-specific parts replaced: the URI by ``<video>``, numbers by ``#``."""
    text = (error or "").strip() or "(no reason given)"
    if uri:
        if text.startswith(f"{uri}: "):
            text = text[len(uri) + 2:]
        text = text.replace(uri, "<video>")
    text = _NUMBER.sub("#", text)
    return _SPACE.sub(" ", text).strip()


@dataclass
class ErrorGroup:
    """One reason: how many rows failed with it and the first few of them as ``(video_id, uri)``."""

    reason: str
    count: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)


class ErrorGroups:
    """Adds error rows one at a time; :meth:`groups` lists the reasons, most frequent first (then by text)."""

    def __init__(self) -> None:
        self._groups: dict[str, ErrorGroup] = {}

    def add(self, video_id: str, uri: str, error: str | None) -> None:
        key = reason_key(error, uri)
        group = self._groups.setdefault(key, ErrorGroup(key))
        group.count += 1
        if len(group.examples) < EXAMPLES:
            group.examples.append((video_id, uri))

    def groups(self) -> list[ErrorGroup]:
        return sorted(self._groups.values(), key=lambda g: (-g.count, g.reason))


def error_groups(files: Sequence[str], storage: StorageOptions | None = None) -> list[ErrorGroup]:
    """The error rows of the labelling output files ``files`` (one run's, say), grouped by reason; only those
    rows' ``video_id``, ``uri`` and ``error`` are read."""
    if not files:
        return []
    table = output_dataset(list(files), storage).to_table(columns=["video_id", "uri", "error"], filter=pc.field("status") == STATUS_ERROR)
    groups = ErrorGroups()
    for row in table.to_pylist():
        groups.add(row["video_id"], row["uri"], row["error"])
    return groups.groups()
