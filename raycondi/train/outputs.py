"""Teacher outputs, computed once: the frozen teacher's logits for every clip, stored beside the shards.

During distillation the teacher never changes, so running it at every step would only repeat work.
:func:`compute_teacher_logits` runs it once per clip with Ray Data batch inference::

    read_split(clips, split)                         shard rows
      -> map_batches(TeacherLogits, ActorPoolStrategy)   the checkpoint loaded once per actor; centre crops
      -> the driver writes {clips}/teacher_logits/{digest}/{split}.parquet

with columns ``video_id, clip_index, logits`` (``fixed_size_list<float32>[C]``); ``digest`` names the
teacher (a hash of its ``config.json`` and ``model.pt``), so the logits of two teachers never mix and a
second call with the same teacher reuses them (``teacher.json``, written last, marks a complete set).
Only logits travel to the driver (C floats per clip). :func:`load_teacher_logits` reads a split back as a
:class:`TeacherLogits` table that looks up rows by ``(video_id, clip_index)``; z (Eq. 1) follows from
the logits and the clips' labels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch

from raycondi.datasets.shards import frames_to_numpy
from raycondi.models import for_inference, load_checkpoint, read_checkpoint_config
from raycondi.models.checkpoint import CONFIG_FILE, MODEL_FILE
from raycondi.models.preprocess import model_input
from raycondi.train.data import read_split
from raycondi.video.storage import StorageOptions, exists, join, open_input, open_output, read_bytes, write_bytes

__all__ = ["StoredLogits", "TeacherLogits", "compute_teacher_logits", "load_teacher_logits", "teacher_logits_uri"]


class TeacherLogits:
    """Ray Data stage: shard rows in, ``video_id, clip_index, logits`` out; loads the checkpoint once."""

    def __init__(self, checkpoint: str, storage: StorageOptions | None = None) -> None:
        self.device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        model, self.config = load_checkpoint(checkpoint, map_location=self.device, storage=storage)
        self.model = for_inference(model, self.device)

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = model_input(frames_to_numpy(batch), self.config, device=self.device)
        logits = self.model(x).float().cpu().numpy()
        return {"video_id": batch["video_id"], "clip_index": batch["clip_index"], "logits": logits}


def teacher_logits_uri(clips: str, teacher: str, storage: StorageOptions | None = None) -> str:
    """Where the logits of ``teacher`` on the shards ``clips`` are stored."""
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, MODEL_FILE):
        digest.update(read_bytes(join(teacher, name), storage))
    return join(clips, "teacher_logits", digest.hexdigest()[:16])


def compute_teacher_logits(
    clips: str,
    teacher: str,
    *,
    splits: tuple[str, ...] = ("train", "val", "test"),
    actors: int = 1,
    gpu: bool = False,
    batch_size: int = 64,
    storage: StorageOptions | None = None,
) -> str:
    """Store the teacher's logits for every clip of ``splits`` present in ``clips``; return their folder.

    Does nothing when they are already stored. ``actors`` teacher replicas run (one GPU each with ``gpu``).
    """
    out = teacher_logits_uri(clips, teacher, storage)
    if exists(join(out, "teacher.json"), storage):
        return out
    config = read_checkpoint_config(teacher, storage=storage)
    present = [s for s in splits if exists(join(clips, s), storage)]
    for split in present:
        predictions = read_split(clips, split, storage).map_batches(
            TeacherLogits,
            fn_constructor_kwargs={"checkpoint": teacher, "storage": storage},
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=batch_size,
            batch_format="numpy",
            num_gpus=1 if gpu else 0,
        )
        parts = list(predictions.iter_batches(batch_size=None, batch_format="numpy"))
        logits = np.concatenate([p["logits"] for p in parts]).astype(np.float32)
        table = pa.table(
            {
                "video_id": pa.array(np.concatenate([p["video_id"] for p in parts]).astype(str)),
                "clip_index": pa.array(np.concatenate([p["clip_index"] for p in parts]).astype(np.int32)),
                "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), config.num_classes),
            }
        )
        with open_output(join(out, f"{split}.parquet"), storage) as stream:
            pq.write_table(table, stream)
    record = {"teacher": teacher, "classes": list(config.class_names), "splits": present}
    write_bytes(join(out, "teacher.json"), json.dumps(record, indent=2).encode(), storage)
    return out


@dataclass(frozen=True)
class StoredLogits:
    """One split's stored teacher logits; :meth:`lookup` joins them to clips by ``(video_id, clip_index)``."""

    logits: np.ndarray  # (N, C) float32
    rows: dict[tuple[str, int], int]

    def lookup(self, video_ids, clip_indices) -> np.ndarray:
        """The ``(B, C)`` logits of the given clips; ``KeyError`` naming a clip the teacher never saw."""
        try:
            index = [self.rows[(str(v), int(c))] for v, c in zip(video_ids, clip_indices, strict=True)]
        except KeyError as e:
            raise KeyError(f"no stored teacher logits for clip {e.args[0]}; recompute them for these shards") from None
        return self.logits[index]


def load_teacher_logits(uri: str, split: str, storage: StorageOptions | None = None) -> StoredLogits:
    """Read ``{uri}/{split}.parquet`` as written by :func:`compute_teacher_logits`."""
    with open_input(join(uri, f"{split}.parquet"), storage) as stream:
        table = pq.read_table(stream)
    column = table["logits"].combine_chunks()
    logits = column.flatten().to_numpy().reshape(len(column), column.type.list_size)
    keys = zip(table["video_id"].to_pylist(), table["clip_index"].to_pylist(), strict=True)
    return StoredLogits(logits=logits, rows={key: i for i, key in enumerate(keys)})
