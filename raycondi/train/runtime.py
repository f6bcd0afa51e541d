"""What the teacher and distillation loops share: launching on Ray Train, devices, checkpoints, resume.

Both loops are plain functions ``loop(config, datasets, report, checkpoint)``:

* ``datasets`` maps "train"/"val" to something with ``iter_batches`` (a Ray Train ``DataIterator`` from
  ``get_dataset_shard``, or a Ray Data ``Dataset`` when a Ray Tune trial runs the loop directly);
* ``report(metrics, directory)`` reports the epoch's metrics and, when ``directory`` is not None, that
  checkpoint directory: :func:`train_report` (``ray.train.report``) or the Tune search's ``ray.tune.report``;
* ``checkpoint`` is the checkpoint to resume from (``ray.train.get_checkpoint()``), or None.

:func:`launch` runs such a loop on a ``TorchTrainer`` (gloo on CPU, NCCL on GPU). The run lives under
``{out}/run`` (``RunConfig(name="run", storage_path=out)``, with a pyarrow filesystem from
:func:`raycondi.video.storage.resolve` so an ``s3://`` endpoint override works). Ray Train V2 restores a run
started again with the same name and storage path: ``get_checkpoint()`` then returns the last reported
checkpoint and the loop continues from the epoch after it. ``FailureConfig(max_failures)`` restarts the
workers from that checkpoint when one dies. After a successful fit, the last checkpoint's model is copied to
``{out}/model``, a plain checkpoint directory (``config.json`` + ``model.pt``) to pass on.

A reported checkpoint is the project's checkpoint format plus ``train_state.pt``: optimizer and scheduler
state dicts and the number of finished epochs, with tensors and plain containers only, so that it loads
with ``torch.load(weights_only=True)`` like ``model.pt``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from raycondi.datasets.shards import frames_to_numpy
from raycondi.models import CheckpointConfig, load_checkpoint, model_info, save_checkpoint
from raycondi.models.checkpoint import CONFIG_FILE, MODEL_FILE
from raycondi.models.preprocess import model_input
from raycondi.video.storage import StorageOptions, absolute, join, resolve, write_bytes

__all__ = [
    "STATE_FILE",
    "Report",
    "TrainOptions",
    "autocast",
    "device",
    "gather",
    "init_model",
    "launch",
    "mean_over_workers",
    "optimizer",
    "predict",
    "publish",
    "rank",
    "report_epoch",
    "restore",
    "seed_everything",
    "train_report",
    "training_batch",
    "world_size",
    "wrap",
]

STATE_FILE = "train_state.pt"
Report = Callable[[dict, "str | None"], None]


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """The schedule and resources a teacher run (``TeacherConfig``) and a distillation run (``DistillConfig``)
    share; both extend it with what they train on.

    Attributes:
        epochs, batch_size, lr, momentum, weight_decay, optimizer: ``"sgd"`` (Nesterov, the paper's) or
            ``"adamw"``; ``batch_size`` is per worker.
        flip: random horizontal flips in training (off for mirror-image classes).
        finetune: a checkpoint to start from (its backbone; a new classifier if the classes differ).
        workers, gpu, cpus_per_worker: Ray Train workers and what each reserves.
        max_failures: worker-group restarts (from the last checkpoint) before the run fails.
        seed: for initialisation and augmentation.
        storage: S3 endpoint options for every URI.
    """

    epochs: int = 50
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-3
    optimizer: str = "sgd"
    flip: bool = True
    finetune: str | None = None
    workers: int = 1
    gpu: bool = False
    cpus_per_worker: float = 1.0
    max_failures: int = 2
    seed: int = 0
    storage: StorageOptions | None = None


def train_report(metrics: dict, directory: str | None) -> None:
    """``ray.train.report`` of ``metrics`` with the checkpoint in ``directory`` (None: metrics only)."""
    import ray.train

    checkpoint = None if directory is None else ray.train.Checkpoint.from_directory(directory)
    ray.train.report(metrics, checkpoint=checkpoint)


def device() -> torch.device:
    """This worker's device: its (first visible) GPU when Ray gave it one, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def make_paths_absolute(config, *names: str) -> None:
    """Make the local paths among the fields ``names`` of the frozen dataclass ``config`` absolute
    (:func:`~raycondi.video.storage.absolute`): Ray Train runs its workers in a working directory of its own,
    where the relative paths a user typed name nothing."""
    for name in names:
        if getattr(config, name) is not None:
            object.__setattr__(config, name, absolute(getattr(config, name)))


def autocast(on: torch.device):
    """bf16 autocast on GPU; nothing on CPU (bf16 convolutions are slow there)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if on.type == "cuda" else contextlib.nullcontext()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def wrap(model: nn.Module, on: torch.device, *, find_unused_parameters: bool = False) -> nn.Module:
    """``model`` on ``on``, in DistributedDataParallel when there is more than one worker."""
    model = model.to(on)
    if world_size() == 1:
        return model
    ids = [on.index] if on.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def gather(items: list) -> list:
    """The concatenation over workers of each worker's ``items`` (every worker gets all of them)."""
    if world_size() == 1:
        return items
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part]


def optimizer(name: str, groups, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """``"sgd"``: SGD with Nesterov momentum (the paper's); ``"adamw"``: AdamW (``momentum`` unused)."""
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer={name!r}: expected 'sgd' or 'adamw'")


def mean_over_workers(values: list[float]) -> float:
    """The mean of every worker's ``values`` (NaN when there are none)."""
    values = gather(list(values))
    return float(np.mean(values)) if values else float("nan")


def init_model(config: CheckpointConfig, finetune: str | None, storage: StorageOptions | None) -> nn.Module:
    """The model ``config`` describes: untrained, or initialised from the checkpoint ``finetune``.

    Fine-tuning loads every weight of ``finetune`` whose name and shape fit (the backbone); the classifier
    (the class head of a student) stays new when the number of classes differs. Raises ``ValueError`` when
    the checkpoint is of another architecture.
    """
    model = config.build()
    if finetune is None:
        return model
    source, source_config = load_checkpoint(finetune, storage=storage)
    if source_config.architecture != config.architecture:
        raise ValueError(
            f"{finetune}: a {source_config.architecture} checkpoint cannot initialise {config.architecture}"
        )
    state = source.state_dict()
    if not source_config.student and config.student:  # a plain classifier initialises a student's backbone
        classifier = model_info(config.architecture).classifier
        state = {f"backbone.{k}": v for k, v in state.items() if not k.startswith(classifier + ".")}
    target = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in target and target[k].shape == v.shape}
    if not fitting:
        raise ValueError(f"{finetune}: no weight fits {config.architecture} with {config.model_kwargs}")
    model.load_state_dict(fitting, strict=False)
    return model


def report_epoch(
    report: Report,
    metrics: Mapping[str, Any],
    model: nn.Module,
    config: CheckpointConfig,
    state: Mapping[str, Any],
) -> None:
    """Report ``metrics`` with a checkpoint (``model`` + ``state`` as ``train_state.pt``) written by rank 0."""
    if rank() != 0:
        report(dict(metrics), None)
        return
    with tempfile.TemporaryDirectory(prefix="raycondi-ckpt-") as directory:
        save_checkpoint(model, directory, config)
        torch.save(dict(state), os.path.join(directory, STATE_FILE))
        report(dict(metrics), directory)


def restore(checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> dict[str, Any]:
    """Load a reported checkpoint into ``model``, ``optimizer`` and ``scheduler``; return its training state
    (``epoch``: epochs finished, and whatever else the loop saved). ``{"epoch": 0}`` without a checkpoint."""
    if checkpoint is None:
        return {"epoch": 0}
    with checkpoint.as_directory() as directory:
        weights, _ = load_checkpoint(directory)
        state = torch.load(os.path.join(directory, STATE_FILE), map_location="cpu", weights_only=True)
    target = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    target.load_state_dict(weights.state_dict())
    optimizer.load_state_dict(state.pop("optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    return state


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch per worker rank and return a numpy generator for augmentation."""
    torch.manual_seed(seed + rank())
    return np.random.default_rng(seed + 1000 * rank())


def launch(
    train_func: Callable[[dict], None],
    loop_config: Mapping[str, Any],
    datasets: Mapping[str, Any],
    *,
    title: str,
    epochs: int,
    out: str,
    workers: int,
    gpu: bool,
    cpus_per_worker: float,
    max_failures: int,
    storage: StorageOptions | None,
):
    """Run ``train_func`` on ``workers`` Ray Train workers with its run under ``{out}/run``; resume if there.

    Returns the ``ray.train.Result``. After fitting, copies the last checkpoint's ``config.json`` and
    ``model.pt`` to ``{out}/model``. The loop gets a progress board as ``loop_config["board"]``; the driver
    draws it as ``title``'s ``epochs`` epochs (:mod:`raycondi.train.progress`).
    """
    import ray
    from ray.train import CheckpointConfig as RayCheckpointConfig
    from ray.train import DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from raycondi.train import progress

    filesystem, path = resolve(out, storage)
    board = progress.Board.remote()
    try:
        trainer = TorchTrainer(
            train_func,
            train_loop_config={**loop_config, "board": board},
            torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
            scaling_config=ScalingConfig(
                num_workers=workers,
                use_gpu=gpu,
                resources_per_worker={"CPU": cpus_per_worker, **({"GPU": 1} if gpu else {})},
            ),
            datasets=dict(datasets),
            # Validation is not split by Ray Data (that could drop clips to even out the shards); each worker
            # evaluates every world_size-th batch of it instead.
            dataset_config=DataConfig(datasets_to_split=["train"]),
            run_config=RunConfig(
                name="run",
                storage_path=path,
                storage_filesystem=filesystem,
                failure_config=FailureConfig(max_failures=max_failures),
                checkpoint_config=RayCheckpointConfig(num_to_keep=None),
            ),
        )
        result = progress.fit(trainer, board, title, epochs)
    finally:
        ray.kill(board)
    if result.checkpoint is not None:
        publish(result.checkpoint, join(out, "model"), storage)
    return result


def publish(checkpoint, destination: str, storage: StorageOptions | None) -> None:
    """Copy a reported checkpoint's model files to ``destination`` (``config.json`` last)."""
    with checkpoint.as_directory() as directory:
        for name in (MODEL_FILE, CONFIG_FILE):
            with open(os.path.join(directory, name), "rb") as f:
                write_bytes(join(destination, name), f.read(), storage)


def training_batch(
    batch: dict[str, np.ndarray], config: CheckpointConfig, on: torch.device, rng: np.random.Generator, flip: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch on ``on``: its clips as random crops (and flips, when ``flip``) of every
    ``config.frame_step``-th frame, and their labels."""
    x = model_input(frames_to_numpy(batch), config, device=on, rng=rng, flip=flip)
    return x, torch.from_numpy(batch["label_index"].astype(np.int64)).to(on)


@torch.no_grad()
def predict(
    model: nn.Module, data, config: CheckpointConfig, on: torch.device, batch_size: int
) -> dict[str, np.ndarray]:
    """Evaluate ``model`` on every clip of ``data`` (centre crops), shared out between the workers.

    Each worker takes every ``world_size()``-th batch and the results are gathered, so every worker returns
    all clips: ``video_id``, ``clip_index``, ``label``, ``logits`` ``(N, C)`` float32, and for a two-headed
    student ``confidence_logit`` ``(N,)``.
    """
    module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    module.eval()
    parts = []
    for i, batch in enumerate(data.iter_batches(batch_size=batch_size, batch_format="numpy")):
        if i % world_size() != rank():
            continue
        x = model_input(frames_to_numpy(batch), config, device=on)
        with autocast(on):
            output = module(x)
        logits, confidence = output if isinstance(output, tuple) else (output, None)
        part = {
            "video_id": batch["video_id"].astype(str),
            "clip_index": batch["clip_index"].astype(np.int64),
            "label": batch["label_index"].astype(np.int64),
            "logits": logits.float().cpu().numpy(),
        }
        if confidence is not None:
            part["confidence_logit"] = confidence.float().cpu().numpy()
        parts.append(part)
    parts = gather(parts)
    module.train()
    if not parts:
        raise ValueError("no validation clips: the val split is empty")
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
