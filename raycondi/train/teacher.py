"""Teacher training on Ray Train: a clip classifier trained with cross-entropy from the clip shards.

``train_teacher(TeacherConfig(...))`` reads the shards' train and val splits as Ray Data datasets and runs
:func:`teacher_loop` on a ``TorchTrainer`` (see :mod:`raycondi.train.runtime` for the run layout under
``out``, resume and ``{out}/model``). The loop, per epoch: SGD (or AdamW) on random crops (and flips),
the learning rate on a cosine schedule over the epochs; then the validation clips' logits, gathered from
every worker, for clip accuracy and dense video accuracy; then a checkpoint and the metrics
``epoch, train_loss, val_clip_accuracy, val_video_accuracy``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
import torch.nn.functional as F

from raycondi.datasets.shards import read_summary
from raycondi.models import CheckpointConfig, read_checkpoint_config
from raycondi.train import runtime
from raycondi.train.data import iter_batches, read_training_splits
from raycondi.train.metrics import clip_accuracy, video_accuracy
from raycondi.train.progress import Progress

__all__ = ["TeacherConfig", "teacher_loop", "train_teacher"]


@dataclass(frozen=True, kw_only=True)
class TeacherConfig(runtime.TrainOptions):
    """A teacher training run.

    Attributes:
        clips: the clip shards (``prepare``'s output), local or ``s3://``.
        out: where the run (``{out}/run``) and the final model (``{out}/model``) go, local or ``s3://``.
        model, model_kwargs: the architecture (``raycondi.models.list_models()``) and its builder's arguments;
            ignored with ``finetune``, whose architecture is kept.
        crop_size: side of the square crops taken from the shards' clips.

    Schedule and resources: the fields of :class:`~raycondi.train.runtime.TrainOptions`.
    """

    clips: str
    out: str
    model: str = "shufflenetv2_3d"
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    crop_size: int = 112

    def __post_init__(self) -> None:
        runtime.make_paths_absolute(self, "clips", "out", "finetune")


def teacher_loop(
    config: TeacherConfig, model_config: CheckpointConfig, datasets, report, checkpoint, board=None
) -> None:
    """Train the teacher ``model_config`` describes; resume from ``checkpoint`` when given; post progress to
    ``board`` (:mod:`raycondi.train.progress`)."""
    on = runtime.device()
    progress = Progress(board, runtime.rank())
    rng = runtime.seed_everything(config.seed)
    model = runtime.wrap(runtime.init_model(model_config, config.finetune, config.storage), on)
    optimizer = runtime.optimizer(config.optimizer, model.parameters(), config.lr, config.momentum, config.weight_decay)

    def cosine(epoch: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    start = runtime.restore(checkpoint, model, optimizer, scheduler)["epoch"]

    for epoch in range(start, config.epochs):
        losses = []
        batches = iter_batches(datasets["train"], config.batch_size, train=True, seed=config.seed + epoch)
        for batch in progress.steps(batches, epoch):
            x, y = runtime.training_batch(batch, model_config, on, rng, config.flip)
            with runtime.autocast(on):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        scheduler.step()

        val = runtime.predict(model, datasets["val"], model_config, on, config.batch_size)
        probs = torch.softmax(torch.from_numpy(val["logits"]), dim=1).numpy()
        metrics = {
            "epoch": epoch + 1,
            "train_loss": runtime.mean_over_workers(losses),
            "val_clip_accuracy": clip_accuracy(val["logits"], val["label"]),
            "val_video_accuracy": video_accuracy(val["video_id"], val["clip_index"], val["label"], probs),
        }
        state = {"epoch": epoch + 1, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        runtime.report_epoch(report, metrics, model, model_config, state)
        progress.epoch(metrics)


def _train_func(loop_config: dict) -> None:
    datasets = {name: ray.train.get_dataset_shard(name) for name in ("train", "val")}
    checkpoint = ray.train.get_checkpoint()
    teacher_loop(loop_config["config"], loop_config["model"], datasets, runtime.train_report, checkpoint,
                 loop_config["board"])


def model_config(config: TeacherConfig) -> CheckpointConfig:
    """The teacher's checkpoint config: architecture, the shards' classes, clip length and resize (the
    preprocessing it is trained on, which ``label`` repeats), the crop size; with ``finetune``, that
    checkpoint's architecture and normalisation (mean and std), which its weights expect."""
    summary = read_summary(config.clips, config.storage)
    kept = {"architecture": config.model, "model_kwargs": dict(config.model_kwargs)}
    if config.finetune is not None:  # its network, and the normalisation its weights were trained with
        source = read_checkpoint_config(config.finetune, storage=config.storage)
        kept = {"architecture": source.architecture, "model_kwargs": dict(source.model_kwargs), "mean": source.mean,
                "std": source.std}
    return CheckpointConfig(
        num_classes=len(summary.classes),
        class_names=tuple(summary.classes),
        clip_len=summary.clip.clip_len,
        crop_size=config.crop_size,
        resize=summary.clip.size,
        **kept,
    )


def train_teacher(config: TeacherConfig):
    """Train (or resume) the teacher on Ray Train; return the ``ray.train.Result``.

    The final model is at ``{config.out}/model``.
    """
    datasets = read_training_splits(config.clips, config.storage)
    return runtime.launch(
        _train_func,
        {"config": config, "model": model_config(config)},
        datasets,
        title="teacher",
        epochs=config.epochs,
        out=config.out,
        workers=config.workers,
        gpu=config.gpu,
        cpus_per_worker=config.cpus_per_worker,
        max_failures=config.max_failures,
        storage=config.storage,
    )
