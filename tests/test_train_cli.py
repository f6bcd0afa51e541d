"""The train-teacher, distill and tune subcommands map their options onto the config dataclasses."""

import dataclasses
import os

import pytest

from raycondi.cli import build_parser
from raycondi.cli_train import distill_config, search_config, teacher_config


def _parse(*argv):
    return build_parser().parse_args(list(argv))


def test_train_teacher_takes_preset_defaults_and_overrides():
    args = _parse("train-teacher", "--clips", "s3://b/clips", "--out", "s3://b/t", "--preset", "small",
                  "--workers", "2", "--gpu", "--epochs", "3", "--endpoint-url", "http://127.0.0.1:9000")
    config = teacher_config(args)
    assert (config.model, dict(config.model_kwargs), config.crop_size) == (
        "resnet3d", {"depth": 10, "width": 0.5, "conv1_t_size": 1}, 32)
    assert (config.epochs, config.workers, config.gpu, config.flip, config.optimizer) == (3, 2, True, False, "adamw")
    assert config.storage.endpoint_url == "http://127.0.0.1:9000"
    paper = teacher_config(_parse("train-teacher", "--clips", "c", "--out", "o"))
    assert (paper.model, dict(paper.model_kwargs), paper.crop_size, paper.flip) == ("resnext3d", {"depth": 101}, 112, True)
    custom = teacher_config(_parse("train-teacher", "--clips", "c", "--out", "o", "--model", "r3d_18"))
    assert (custom.model, dict(custom.model_kwargs)) == ("r3d_18", {})


def test_distill_defaults_are_the_papers():
    config = distill_config(_parse("distill", "--clips", "c", "--teacher", "t", "--out", "o", "--method", "st_conf"), "o")
    assert (config.method, config.lam, config.mu, config.tau) == ("st_conf", 1.5, 1.5, 0.9)
    assert (config.student, dict(config.student_kwargs)) == ("shufflenetv2_3d", {"width": 2.0})
    with pytest.raises(SystemExit):
        _parse("distill", "--clips", "c", "--teacher", "t", "--out", "o", "--method", "nope")


def test_distill_small_preset_fills_student_and_lambda_unless_given():
    small = distill_config(_parse("distill", "--clips", "c", "--teacher", "t", "--out", "o", "--preset", "small"), "o")
    assert (small.student, dict(small.student_kwargs), small.lam) == (
        "resnet3d", {"depth": 10, "width": 0.25, "conv1_t_size": 1}, 0.5)
    given = distill_config(_parse("distill", "--clips", "c", "--teacher", "t", "--out", "o", "--preset", "small",
                                   "--lam", "2.0"), "o")
    assert given.lam == 2.0


def test_tune_ranges_and_objective():
    args = _parse("tune", "--clips", "c", "--teacher", "t", "--out", "o", "--samples", "4", "--k", "3",
                  "--lam-range", "0.5", "2.0", "--gpus-per-trial", "0.5")
    config = search_config(args)
    assert (config.samples, config.k, config.lam, config.gpus_per_trial) == (4, 3, (0.5, 2.0), 0.5)
    assert config.tau == (0.5, 2.0) and config.distill.out == os.path.abspath("o")  # for the workers


def test_tune_can_keep_the_best_auroc_and_centres_the_rate_on_the_presets():
    args = _parse("tune", "--clips", "c", "--teacher", "t", "--out", "o", "--preset", "small", "--objective", "auroc")
    config = search_config(args)
    assert config.objective == "auroc" and config.lr == pytest.approx((0.002 / 3, 0.006))  # AdamW's 0.002
    assert search_config(_parse("tune", "--clips", "c", "--teacher", "t", "--out", "o")).lr == pytest.approx(
        (0.1 / 3, 0.3))  # the paper's SGD rate
    with pytest.raises(ValueError, match="objective='loss': expected video_accuracy or auroc"):
        dataclasses.replace(config, objective="loss")


def test_distill_head_decay_and_mixing_come_from_the_preset_unless_given():
    base = ("distill", "--clips", "c", "--teacher", "t", "--out", "o", "--preset", "small")
    small = distill_config(_parse(*base), "o")
    assert (small.head_decay, small.mix_gradient) == (5.0, True)
    given = distill_config(_parse(*base, "--head-decay", "1.25", "--no-mix-gradient"), "o")
    assert (given.head_decay, given.mix_gradient) == (1.25, False)
