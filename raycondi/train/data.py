"""Clip shards as Ray Data datasets, and batches of shard rows as normalised model input.

:func:`read_split` reads a split of the shards written by :func:`raycondi.datasets.shards.prepare` (local or
``s3://``, through :func:`raycondi.video.storage.resolve`, so a custom endpoint works) as a Ray Data dataset
of shard rows. Training loops iterate it (``get_dataset_shard`` under Ray Train) and turn each numpy batch
into a float ``(B, 3, T, H, W)`` tensor with :func:`clips_to_tensor`: a random crop and horizontal flip per
clip for training, the centre crop for evaluation, then ``(x / 255 - mean) / std``.

Design note: pixels are cropped and normalised in the training worker, on its device, not in a Ray Data
``map_batches`` stage: the shards are already decoded and cropping is cheap, and a CPU stage would compete
with the training workers for the CPUs of a small cluster.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow.fs as pafs
import ray
import torch

from raycondi.datasets.shards import frames_to_numpy
from raycondi.video.storage import StorageOptions, exists, join, resolve

__all__ = ["CACHE_BYTES", "COLUMNS", "clips_to_tensor", "iter_batches", "read_split", "read_training_splits"]

COLUMNS = ["video_id", "clip_index", "label_index", "frames", "frames_shape"]
CACHE_BYTES = 2 << 30  # training splits whose shards total at most this are read once, into the object store


def read_split(clips: str, split: str, storage: StorageOptions | None = None) -> ray.data.Dataset:
    """The rows (``COLUMNS``) of ``split`` ("train", "val" or "test") of the shards under ``clips``.

    Raises ``FileNotFoundError`` naming the folder when the split has no shards.
    """
    uri = join(clips, split)
    if not exists(uri, storage):
        raise FileNotFoundError(f"{uri}: no {split} shards; run `raycondi prepare` first (or check --clips)")
    filesystem, path = resolve(uri, storage)
    return ray.data.read_parquet(path, filesystem=filesystem, file_extensions=["parquet"]).select_columns(COLUMNS)


def read_training_splits(
    clips: str, storage: StorageOptions | None = None, *, cache_bytes: int = CACHE_BYTES
) -> dict[str, ray.data.Dataset]:
    """The "train" and "val" splits of ``clips`` for a training loop, which reads both every epoch.

    A split whose shard files total at most ``cache_bytes`` is materialized in the object store once, here,
    so that epochs iterate blocks already in memory instead of starting a new Parquet read each time. On the
    quickstart's shards (47 MB of train clips, 2 CPUs) a training worker spent 65 % of its time waiting for
    those per-epoch reads (37 % for the training batches, 28 % for the validation pass) and an epoch took 22 s;
    cached, 7.5 s. Larger splits stream from storage every epoch.
    """
    datasets = {}
    for split in ("train", "val"):
        dataset = read_split(clips, split, storage)
        filesystem, path = resolve(join(clips, split), storage)
        files = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
        size = sum(f.size for f in files if f.type == pafs.FileType.File and f.path.endswith(".parquet"))
        datasets[split] = dataset.materialize() if size <= cache_bytes else dataset
    return datasets


def iter_batches(data, batch_size: int, *, train: bool, seed: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Numpy batches of a ``DataIterator`` (Ray Train shard) or ``Dataset``; for training, shuffled locally
    and without the incomplete last batch."""
    shuffle = {"local_shuffle_buffer_size": 4 * batch_size, "local_shuffle_seed": seed} if train else {}
    # drop_last in training: a batch of one clip cannot train BatchNorm, and DDP workers stay in step
    return data.iter_batches(batch_size=batch_size, batch_format="numpy", drop_last=train, **shuffle)


def clips_to_tensor(
    batch: dict[str, np.ndarray],
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    device: torch.device | str = "cpu",
    rng: np.random.Generator | None = None,
    flip: bool = True,
    frame_step: int = 1,
) -> torch.Tensor:
    """A batch of shard rows as a float ``(B, 3, T, crop, crop)`` tensor on ``device``.

    ``batch["frames"]`` holds the shard's encoded rows (a Ray Data numpy batch, with ``frames_shape``) or
    is already a uint8 ``(B, T, H, W, 3)`` array (as ``iter_clip_batches`` yields).

    With ``rng`` (training) each clip gets its own random ``crop_size`` window and, with ``flip``, is
    flipped left-right with probability 1/2 (turn it off where the classes are mirror images of each
    other, as the synthetic benchmark's MoveLeft/MoveRight); without ``rng`` (evaluation) every clip gets
    the centre window. ``frame_step`` keeps every ``frame_step``-th frame (``CheckpointConfig.frame_step``: a
    skimming student's input). Raises ``ValueError`` when the shards' clips are smaller than ``crop_size``.
    """
    frames = batch["frames"]
    if not (isinstance(frames, np.ndarray) and frames.ndim == 5):  # shard rows, not yet decoded to an array
        frames = frames_to_numpy(batch)  # (B, T, H, W, 3) uint8
    frames = frames[:, ::frame_step]
    b, _, h, w, _ = frames.shape
    if h < crop_size or w < crop_size:
        raise ValueError(f"crop_size={crop_size} is larger than the shards' {h}x{w} clips")
    if rng is None:
        top, left = np.full(b, (h - crop_size) // 2), np.full(b, (w - crop_size) // 2)
        flips = np.zeros(b, dtype=bool)
    else:
        top, left = rng.integers(0, h - crop_size + 1, b), rng.integers(0, w - crop_size + 1, b)
        flips = (rng.random(b) < 0.5) & flip
    crops = np.stack(
        [
            frames[i, :, t : t + crop_size, l : l + crop_size][:, :, ::-1 if flip else 1]
            for i, (t, l, flip) in enumerate(zip(top, left, flips, strict=True))
        ]
    )
    x = torch.from_numpy(crops).to(device).permute(0, 4, 1, 2, 3).float().div_(255)
    mean_t = torch.tensor(mean, device=x.device).view(1, 3, 1, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, 3, 1, 1, 1)
    return ((x - mean_t) / std_t).contiguous()
