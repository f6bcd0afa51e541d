"""Per-clip outputs and per-clip costs, measured once on real models and real clips.

:func:`predict_clips` runs the teacher and every student over every clip of a split with Ray Data batch
inference::

    read_parquet(shards of the split)                 shard rows (pixels, video_id, clip_index, label, times)
      -> map_batches(ClipPredictor, ActorPoolStrategy)   every checkpoint loaded once per actor
      -> the driver gathers one small row per clip       probabilities and z̃, never pixels

and returns one table with a row per clip: ``video_id, clip_index, label_index, start_s, end_s,
teacher_probs`` (``fixed_size_list<float32>[C]``; and the shards' ``keyframe_offset`` when they have it) and, per
student method, ``{method}_probs`` and
``{method}_confidence`` (z̃ = sigmoid of the confidence logit), plus each model's measured seconds on the
clip (``teacher_s``, ``{method}_s``: the clip's share of its batch's time, from the uint8 batch to the
probabilities, as the labelling job's stages spend it). The models run one after the other on the same
batch in the same actor, so their timings are taken under the same conditions.

Why not :func:`raycondi.train.outputs.compute_teacher_logits`: it runs only the teacher, caches its logits
(a cached run would measure nothing) and keeps no clip times.

:func:`measure_plan_seconds` times the labelling job's decode plans on a few of the split's source videos: a clip
decoded in a stream, a clip reached by seeking, a keyframe candidate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import ray
import torch

from raycondi.datasets.manifests import read_dataset
from raycondi.datasets.shards import frames_to_numpy
from raycondi.models import CheckpointConfig, for_inference, load_checkpoint
from raycondi.models.preprocess import model_input
from raycondi.pipeline.plans import choose_clips, unscored
from raycondi.video.decode import ClipSpec
from raycondi.video.storage import StorageOptions, exists, join, open_input, resolve

__all__ = ["READ_COLUMNS", "ClipPredictor", "measure_plan_seconds", "predict_clips", "read_ground_truth"]

READ_COLUMNS = ["video_id", "clip_index", "label_index", "start_s", "end_s", "frames", "frames_shape"]


class ClipPredictor:
    """Ray Data stage: shard rows in, per-clip probabilities, z̃ and seconds per model out."""

    def __init__(self, teacher: str, students: Mapping[str, str], storage: StorageOptions | None = None) -> None:
        self.device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        self.models: dict[str, tuple[torch.nn.Module, CheckpointConfig]] = {}
        for name, uri in {"teacher": teacher, **students}.items():
            model, config = load_checkpoint(uri, map_location=self.device, storage=storage)
            self.models[name] = (for_inference(model, self.device), config)

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {name: values for name, values in batch.items() if name not in ("frames", "frames_shape")}
        size = len(batch["video_id"])
        frames = frames_to_numpy(batch)
        for name, (model, config) in self.models.items():
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            x = model_input(frames, config, device=self.device)
            output = model(x)
            logits, confidence = output if isinstance(output, tuple) else (output, None)
            probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
            seconds = time.perf_counter() - started
            out[f"{name}_probs"] = probs
            out[f"{name}_s"] = np.full(size, seconds / size)
            if confidence is not None:
                out[f"{name}_confidence"] = torch.sigmoid(confidence.float()).cpu().numpy()
        return out


def predict_clips(
    clips: str, split: str, teacher: str, students: Mapping[str, str], *, actors: int = 1, gpu: bool = False,
    batch_size: int = 32, storage: StorageOptions | None = None,
) -> pa.Table:
    """Every clip of ``split`` under the shards ``clips`` through the teacher and each student, once.

    ``actors`` replicas of :class:`ClipPredictor` (one GPU each with ``gpu``). Returns the per-clip table of
    the module docstring, sorted by ``(video_id, clip_index)``. Raises ``FileNotFoundError`` naming the
    folder when the split has no shards.
    """
    uri = join(clips, split)
    if not exists(uri, storage):
        raise FileNotFoundError(f"{uri}: no {split} shards; run `raycondi prepare` first (or check --clips)")
    filesystem, path = resolve(uri, storage)
    recorded = "keyframe_offset" in pads.dataset(path, filesystem=filesystem, format="parquet").schema.names
    columns = READ_COLUMNS + ["keyframe_offset"] if recorded else READ_COLUMNS  # shards prepared before lack it
    rows = ray.data.read_parquet(path, filesystem=filesystem, file_extensions=["parquet"]).select_columns(columns)
    predictions = rows.map_batches(
        ClipPredictor,
        fn_constructor_kwargs={"teacher": teacher, "students": dict(students), "storage": storage},
        compute=ray.data.ActorPoolStrategy(size=actors),
        batch_size=batch_size,
        batch_format="numpy",
        num_gpus=1 if gpu else 0,
    )
    parts = list(predictions.iter_batches(batch_size=None, batch_format="numpy"))
    if not parts:
        raise FileNotFoundError(f"{uri}: the {split} shards hold no clips")
    columns = {}
    for name in parts[0]:
        values = np.concatenate([p[name] for p in parts])
        if values.ndim == 2:
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.astype(np.float32).ravel()),
                                                              values.shape[1])
        elif name == "video_id":
            columns[name] = pa.array(values.astype(str))
        else:
            columns[name] = pa.array(values)
    return pa.table(columns).sort_by([("video_id", "ascending"), ("clip_index", "ascending")])


def measure_plan_seconds(
    dataset: str, split: str, spec: ClipSpec, plan: str, *, videos: int = 4, k: int = 1, reach: int = 1,
    skim_step: int = 1, storage: StorageOptions | None = None,
) -> float | None:
    """Seconds per clip the labelling job spends decoding by ``plan`` (:mod:`raycondi.pipeline.plans`, its own
    code) on the first ``videos`` videos of ``split`` (after an untimed warm-up on the first), total time over
    the clips the plan decoded: ``full``, a stream of every clip (at ``skim_step``, a skimming student's pass);
    ``seek``, Equidistant's ``k`` clips reached by seeking; ``keyframes``, the candidates within ``reach`` frames
    of a keyframe. For ``seek`` and ``keyframes``, None when no video could be decoded that way. Raises what
    reading the dataset or decoding raises (``ManifestError``, ``StorageError``, ``VideoDecodeError``) and
    ``ValueError`` when the split has no videos."""
    table = read_dataset(dataset, storage=storage, check_files=False)
    uris = [row["uri"] for row in table.to_pylist() if row["split"] == split][:videos]
    if not uris:
        raise ValueError(f"{dataset}: no {split} videos to time decoding on")
    strategy, candidates = {"full": ("condi_sr", "clips"), "seek": ("equidistant", "clips"),
                            "keyframes": ("condi_sr", "keyframes")}[plan]

    def decode(uri: str):
        return choose_clips(uri, strategy, k, spec=spec, candidates=candidates, reach=reach, scorer=unscored,
                            skim_step=skim_step, storage=storage)

    decode(uris[0])  # warm-up: first open, caches
    clips, seconds = 0, 0.0
    for uri in uris:
        chosen, used, _ = decode(uri)
        if used == plan:
            clips, seconds = clips + len(chosen.clips), seconds + chosen.decode_s
    return seconds / clips if clips else None


def read_ground_truth(uri: str, storage: StorageOptions | None = None) -> pa.Table:
    """The synthetic benchmark's ``ground_truth.parquet`` (``video_id, start_s, end_s, ambiguous``)."""
    with open_input(uri, storage) as stream:
        return pq.read_table(stream, columns=["video_id", "start_s", "end_s", "ambiguous"])
