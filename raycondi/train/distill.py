"""Confidence distillation (ConDi-SR, paper Sec. III-B) and its baselines on Ray Train.

``distill(DistillConfig(...))`` stores the teacher's logits once (:mod:`raycondi.train.outputs`), then runs
:func:`distill_loop` on a ``TorchTrainer`` (run layout, resume and ``{out}/model`` as in
:mod:`raycondi.train.runtime`). What differs between methods is only the loss (:data:`LOSSES`) and the
per-clip score that decides which clips go to the teacher, which is the method's row of
:mod:`raycondi.strategies` (the table every command reads).

============  ===============================================  ====================================
method        loss (``raycondi.losses``)                       selection score (higher = teacher)
============  ===============================================  ====================================
condi_sr      ``condi_sr_loss`` (Eq. 6, λ, μ, τ)               confidence z̃
st_ent        ``kd_loss`` (τ)                                  negative student predictive entropy
st_conf       ``devries_confidence_loss``, λ_DV per step        confidence z̃
bce_conf      ``bce_conf_loss`` (λ, μ)                         confidence z̃
============  ===============================================  ====================================

st_conf's λ_DV (DeVries & Taylor's hint budget, not ``--lam``) starts at 0.1 and is updated after every
step by ``devries_next_lambda`` from the batch's ``confidence_penalty``; each worker updates its own from
its batches and rank 0's value is checkpointed.

Learning rates (Sec. IV-A): two parameter groups starting at ``lr``; at epoch e (from 0) the confidence
head's is ``lr / head_decay**e`` (the paper's 5) and the rest's ``lr / 1.25**e``.

Validation each epoch, from the stored val logits: student clip accuracy, AUROC of the method's score for
z (Eq. 1), the teacher's dense video accuracy and the video accuracy when the top-K clips by the score go
to the teacher, for each K in ``ks`` (metric names ``val_video_accuracy_k{K}``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
import torch
from torch import Tensor

from raycondi.datasets.shards import read_summary
from raycondi.losses import (
    bce_conf_loss,
    condi_sr_loss,
    confidence_penalty,
    devries_confidence_loss,
    devries_next_lambda,
    kd_loss,
)
from raycondi.models import CheckpointConfig, read_checkpoint_config
from raycondi.strategies import METHODS, clip_scores
from raycondi.train import runtime
from raycondi.train.data import iter_batches, read_training_splits
from raycondi.train.metrics import auroc, clip_accuracy, video_accuracy
from raycondi.train.outputs import compute_teacher_logits, load_teacher_logits
from raycondi.train.progress import Progress

__all__ = ["LOSSES", "METHODS", "DistillConfig", "Loss", "distill", "distill_loop", "evaluate_student",
           "student_config"]

DEVRIES_INITIAL_LAMBDA = 0.1


@dataclass(frozen=True, kw_only=True)
class DistillConfig(runtime.TrainOptions):
    """A distillation run.

    Attributes:
        clips: the clip shards; the teacher's logits are stored under ``{clips}/teacher_logits/``.
        teacher: the teacher checkpoint (``train-teacher``'s ``{out}/model``).
        out: where the run (``{out}/run``) and the student (``{out}/model``) go.
        student, student_kwargs: the student's backbone (``list_models()``) and its builder's arguments.
        frame_step: the student sees every ``frame_step``-th frame of the teacher's clips
            (``CheckpointConfig.frame_step``); 1 is the paper's input, more lets the labelling job skim.
        method: one of :data:`raycondi.strategies.METHODS`.
        lam, mu, tau: λ, μ, τ of the losses (paper: 1.5, 1.5, 0.9).
        head_decay: the confidence head's learning rate is divided by this every epoch (paper: 5, written
            for a 50-epoch schedule; in a 5-epoch one the head trains at full rate for about one epoch).
        mix_gradient: condi_sr only; False detaches Eq. 5's weight (a variant, see ``condi_sr_loss``).
        ks: the K of the validation video accuracies.

    Schedule and resources: the fields of :class:`~raycondi.train.runtime.TrainOptions` (``finetune``
    initialises the student's backbone).
    """

    clips: str
    teacher: str
    out: str
    student: str = "shufflenetv2_3d"
    student_kwargs: Mapping[str, Any] = field(default_factory=dict)
    frame_step: int = 1
    method: str = "condi_sr"
    lam: float = 1.5
    mu: float = 1.5
    tau: float = 0.9
    head_decay: float = 5.0
    mix_gradient: bool = True
    ks: tuple[int, ...] = (1, 3, 5)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: expected one of {', '.join(METHODS)}")
        if self.head_decay < 1:
            raise ValueError(f"head_decay={self.head_decay!r}: must be >= 1 (the head's rate never grows)")
        runtime.make_paths_absolute(self, "clips", "teacher", "out", "finetune")


# --- the methods: loss and selection score ------------------------------------------------------------

def _condi_sr(
    logits: Tensor, confidence: Tensor, teacher: Tensor, labels: Tensor, c: DistillConfig, _: float
) -> Tensor:
    return condi_sr_loss(logits, confidence, teacher, labels, tau=c.tau, lam=c.lam, mu=c.mu,
                         mix_gradient=c.mix_gradient)


def _st_ent(
    logits: Tensor, confidence: Tensor, teacher: Tensor, labels: Tensor, c: DistillConfig, _: float
) -> Tensor:
    return kd_loss(logits, teacher, labels, tau=c.tau)


def _st_conf(
    logits: Tensor, confidence: Tensor, teacher: Tensor, labels: Tensor, c: DistillConfig, lam_dv: float
) -> Tensor:
    return devries_confidence_loss(logits, confidence, labels, lam=lam_dv)


def _bce_conf(
    logits: Tensor, confidence: Tensor, teacher: Tensor, labels: Tensor, c: DistillConfig, _: float
) -> Tensor:
    return bce_conf_loss(logits, confidence, teacher, labels, lam=c.lam, mu=c.mu)


Loss = Callable[[Tensor, Tensor, Tensor, Tensor, DistillConfig, float], Tensor]
"""``loss(logits, confidence_logit, teacher_logits, labels, config, lam_dv)``."""

LOSSES: dict[str, Loss] = {"condi_sr": _condi_sr, "st_ent": _st_ent, "st_conf": _st_conf, "bce_conf": _bce_conf}


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def evaluate_student(
    method: str, predictions: Mapping[str, np.ndarray], teacher_logits: np.ndarray, ks: tuple[int, ...]
) -> dict[str, float]:
    """Validation metrics of a student from its ``predictions`` (``runtime.predict``'s dict) and the
    teacher's logits on the same clips: ``clip_accuracy``, ``auroc`` (of the method's score for z),
    ``teacher_clip_accuracy`` (the share of z = 1), ``video_accuracy_dense`` (the teacher on every clip)
    and ``video_accuracy_k{K}``."""
    p = predictions
    z = teacher_logits.argmax(axis=1) == p["label"]  # Eq. 1, first index on ties as teacher_correct
    confidence = 1 / (1 + np.exp(-p["confidence_logit"].astype(np.float64)))
    score = clip_scores(method, _softmax(p["logits"].astype(np.float64)), confidence)
    probs = _softmax(teacher_logits.astype(np.float64))
    clips = (p["video_id"], p["clip_index"], p["label"], probs)
    metrics = {
        "clip_accuracy": clip_accuracy(p["logits"], p["label"]),
        "auroc": auroc(score, z),
        "teacher_clip_accuracy": float(z.mean()),
        "video_accuracy_dense": video_accuracy(*clips),
    }
    metrics.update({f"video_accuracy_k{k}": video_accuracy(*clips, scores=score, k=k) for k in ks})
    return metrics


def distill_loop(
    config: DistillConfig, model_config: CheckpointConfig, logits_uri: str, datasets, report, checkpoint, board=None
) -> None:
    """Distil the student ``model_config`` describes from the logits stored at ``logits_uri``; post progress to
    ``board`` (:mod:`raycondi.train.progress`)."""
    on = runtime.device()
    progress = Progress(board, runtime.rank())
    rng = runtime.seed_everything(config.seed)
    loss_of = LOSSES[config.method]
    model = runtime.wrap(
        runtime.init_model(model_config, config.finetune, config.storage),
        on,
        find_unused_parameters=config.method == "st_ent",  # its loss never touches the confidence head
    )
    module = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    head = list(module.confidence_head.parameters())
    rest = [p for p in module.parameters() if all(p is not q for q in head)]
    optimizer = runtime.optimizer(
        config.optimizer, [{"params": rest}, {"params": head}], config.lr, config.momentum, config.weight_decay
    )
    decay = config.head_decay
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [lambda e: 1.25**-e, lambda e: decay**-e])
    state = runtime.restore(checkpoint, model, optimizer, scheduler)
    lam_dv = state.get("devries_lambda", DEVRIES_INITIAL_LAMBDA)
    train_logits = load_teacher_logits(logits_uri, "train", config.storage)
    val_logits = load_teacher_logits(logits_uri, "val", config.storage)

    for epoch in range(state["epoch"], config.epochs):
        losses = []
        batches = iter_batches(datasets["train"], config.batch_size, train=True, seed=config.seed + epoch)
        for batch in progress.steps(batches, epoch):
            x, y = runtime.training_batch(batch, model_config, on, rng, config.flip)
            teacher = torch.from_numpy(train_logits.lookup(batch["video_id"], batch["clip_index"])).to(on)
            with runtime.autocast(on):
                logits, confidence = model(x)
            loss = loss_of(logits.float(), confidence.float(), teacher, y, config, lam_dv)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if config.method == "st_conf":
                lam_dv = devries_next_lambda(lam_dv, confidence_penalty(confidence.detach().float()).item())
        scheduler.step()

        val = runtime.predict(model, datasets["val"], model_config, on, config.batch_size)
        scores = evaluate_student(config.method, val, val_logits.lookup(val["video_id"], val["clip_index"]), config.ks)
        metrics = {"epoch": epoch + 1, "train_loss": runtime.mean_over_workers(losses)}
        metrics.update({f"val_{name}": value for name, value in scores.items()})
        state = {
            "epoch": epoch + 1,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "devries_lambda": lam_dv,
        }
        runtime.report_epoch(report, metrics, model, model_config, state)
        progress.epoch(metrics)


def _train_func(loop_config: dict) -> None:
    datasets = {name: ray.train.get_dataset_shard(name) for name in ("train", "val")}
    distill_loop(
        loop_config["config"], loop_config["model"], loop_config["logits"], datasets,
        runtime.train_report, ray.train.get_checkpoint(), loop_config["board"],
    )


def student_config(config: DistillConfig) -> CheckpointConfig:
    """The student's checkpoint config: the teacher's classes, clip length, crop and normalisation (with
    ``finetune``, that checkpoint's normalisation), the resize of the shards it is distilled on, and
    ``config.frame_step``; ``ValueError`` when the teacher's clips are
    shorter than ``frame_step`` or smaller than its crop."""
    teacher = read_checkpoint_config(config.teacher, storage=config.storage)
    resize = read_summary(config.clips, config.storage).clip.size
    normalisation = {}
    if config.finetune is not None:  # the normalisation the starting weights were trained with
        source = read_checkpoint_config(config.finetune, storage=config.storage)
        normalisation = {"mean": source.mean, "std": source.std}
    try:
        return dataclasses.replace(
            teacher, architecture=config.student, student=True, model_kwargs=dict(config.student_kwargs),
            frame_step=config.frame_step, resize=resize, **normalisation,
        )
    except ValueError as error:
        raise ValueError(f"--frame-step {config.frame_step} with the teacher {config.teacher} on {config.clips}: "
                         f"{error}") from None


def prepare_inputs(config: DistillConfig) -> tuple[CheckpointConfig, str, dict[str, ray.data.Dataset]]:
    """What a distillation run needs besides its config: the student's checkpoint config, the stored
    teacher logits (computed now if missing) and the train/val datasets."""
    logits = compute_teacher_logits(config.clips, config.teacher, gpu=config.gpu, storage=config.storage)
    datasets = read_training_splits(config.clips, config.storage)
    return student_config(config), logits, datasets


def distill(config: DistillConfig):
    """Distil (or resume distilling) a student on Ray Train; return the ``ray.train.Result``.

    The student is at ``{config.out}/model``.
    """
    model_config, logits, datasets = prepare_inputs(config)
    return runtime.launch(
        _train_func,
        {"config": config, "model": model_config, "logits": logits},
        datasets,
        title=f"{config.method} student",
        epochs=config.epochs,
        out=config.out,
        workers=config.workers,
        gpu=config.gpu,
        cpus_per_worker=config.cpus_per_worker,
        max_failures=config.max_failures,
        storage=config.storage,
    )
