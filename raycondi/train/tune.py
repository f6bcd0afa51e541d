"""The λ/μ/τ/learning-rate search with Ray Tune, ASHA on the epoch, objective the val video accuracy at K or the
val AUROC of the method's score for z (``objective="auroc"``: what makes a sampler pick the teacher's right clips,
and a smoother signal than the accuracy of a few hundred validation videos).

``search(SearchConfig(...))`` samples ``samples`` configurations from the ranges (λ, μ, τ uniform, the
learning rate log-uniform; defaults around the paper's 1.5, 1.5, 0.9 and 0.1), runs each as a Tune trial,
stops the poor ones early with ASHA (``time_attr="epoch"``), and keeps the best by
``val_video_accuracy_k{k}`` (or ``val_auroc``). The experiment lives in ``{out}/tune``; calling ``search`` again with the same
``out`` restores it (``Tuner.can_restore``/``Tuner.restore``, errored trials resumed) instead of starting
over. At the end the best trial's student is copied to ``{out}/best/model`` and ``{out}/best.json`` records
its configuration, its score and both checkpoint locations.

Design note -- one trial is one process running :func:`raycondi.train.distill.distill_loop` directly.
Ray 2.60's documented way to tune a Train V2 run is a Tune function trainable that launches a
``TorchTrainer`` per trial; that is three layers of actors per trial (trial, train controller, workers),
which a 2-CPU machine cannot run concurrently and which buys nothing for a one-worker trial. The loop is
written against ``(datasets, report, checkpoint)`` so the same function serves both: Ray Train passes
``get_dataset_shard``/``ray.train.report``, a trial passes the datasets and ``ray.tune.report`` (its
checkpoints resume the trial). Multi-worker trials would go through the documented nesting instead.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ray import tune
from ray.tune.schedulers import ASHAScheduler

from raycondi.train import runtime
from raycondi.train.distill import DistillConfig, distill_loop, prepare_inputs
from raycondi.video.storage import join, resolve, write_bytes

__all__ = ["SearchConfig", "search"]


@dataclass(frozen=True)
class SearchConfig:
    """A search. ``distill`` holds everything but λ, μ, τ and the learning rate (its ``out`` is unused:
    trials live under ``{out}/tune``); the ranges are (low, high)."""

    distill: DistillConfig
    out: str
    samples: int = 8
    k: int = 1
    objective: str = "video_accuracy"
    lam: tuple[float, float] = (0.5, 2.5)
    mu: tuple[float, float] = (1.0, 2.0)
    tau: tuple[float, float] = (0.5, 2.0)
    lr: tuple[float, float] = (0.01, 0.2)
    grace_period: int = 1
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int | None = None  # None: as many as the resources allow

    def __post_init__(self) -> None:
        for name in ("lam", "mu", "tau", "lr"):
            low, high = getattr(self, name)
            if not 0 <= low <= high or (name in ("tau", "lr") and low <= 0):
                raise ValueError(f"{name}={getattr(self, name)}: expected 0 <= low <= high (> 0 for tau, lr)")
        if self.objective not in ("video_accuracy", "auroc"):
            raise ValueError(f"objective={self.objective!r}: expected video_accuracy or auroc")
        if self.k not in self.distill.ks:
            raise ValueError(f"k={self.k}: the distillation evaluates K in {self.distill.ks} only")


def _report(metrics: dict, directory: str | None) -> None:
    tune.report(metrics, checkpoint=None if directory is None else tune.Checkpoint.from_directory(directory))


def _trial(params: dict, *, base: DistillConfig, model, logits: str, datasets: dict) -> None:
    config = dataclasses.replace(base, **params)
    distill_loop(config, model, logits, datasets, _report, tune.get_checkpoint())


def search(config: SearchConfig) -> dict:
    """Run (or resume) the search; return and write the best trial's record (see module docstring)."""
    base = config.distill
    model, logits, datasets = prepare_inputs(base)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=base, model=model, logits=logits, datasets=datasets),
        {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial},
    )
    metric = "val_auroc" if config.objective == "auroc" else f"val_video_accuracy_k{config.k}"
    filesystem, path = resolve(config.out, base.storage)
    experiment = f"{path.rstrip('/')}/tune"
    if tune.Tuner.can_restore(experiment, storage_filesystem=filesystem):
        tuner = tune.Tuner.restore(experiment, trainable, resume_errored=True, storage_filesystem=filesystem)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={
                "lam": tune.uniform(*config.lam),
                "mu": tune.uniform(*config.mu),
                "tau": tune.uniform(*config.tau),
                "lr": tune.loguniform(*config.lr),
            },
            tune_config=tune.TuneConfig(
                metric=metric,
                mode="max",
                num_samples=config.samples,
                scheduler=ASHAScheduler(time_attr="epoch", max_t=base.epochs, grace_period=config.grace_period),
                max_concurrent_trials=config.max_concurrent_trials,
            ),
            run_config=tune.RunConfig(name="tune", storage_path=path, storage_filesystem=filesystem),
        )
    best = tuner.fit().get_best_result(metric=metric, mode="max", scope="last")
    destination = join(config.out, "best", "model")
    runtime.publish(best.checkpoint, destination, base.storage)
    record = {
        "metric": metric,
        "value": best.metrics[metric],
        "config": best.config,
        "epoch": best.metrics["epoch"],
        "checkpoint": destination,
        "trial_checkpoint": best.checkpoint.path,
        "trial": best.path,
    }
    write_bytes(join(config.out, "best.json"), json.dumps(record, indent=2).encode(), base.storage)
    return record
