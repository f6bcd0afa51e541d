"""raycondi.train.runtime without a cluster: fine-tuning initialisation, checkpoint + training state round trip."""

import shutil

import pytest
import torch
from ray.train import Checkpoint

from raycondi.models import CheckpointConfig, load_checkpoint, save_checkpoint
from raycondi.train import runtime

TEACHER = CheckpointConfig(architecture="shufflenetv2_3d", num_classes=3, model_kwargs={"width": 0.25})


def test_finetune_keeps_backbone_and_renews_classifier(tmp_path):
    torch.manual_seed(0)
    source = TEACHER.build()
    save_checkpoint(source, str(tmp_path / "teacher"), TEACHER)

    same = runtime.init_model(TEACHER, str(tmp_path / "teacher"), None)
    for name, value in source.state_dict().items():
        assert torch.equal(same.state_dict()[name], value), name

    student_config = CheckpointConfig(architecture="shufflenetv2_3d", num_classes=5, student=True,
                                      model_kwargs={"width": 0.25})
    student = runtime.init_model(student_config, str(tmp_path / "teacher"), None)
    backbone = {k: v for k, v in source.state_dict().items() if not k.startswith("classifier.1.")}
    for name, value in backbone.items():
        assert torch.equal(student.state_dict()[f"backbone.{name}"], value), name
    assert student.class_head.weight.shape == (5, source.classifier[1].in_features)

    other = CheckpointConfig(architecture="mobilenetv2_3d", num_classes=3, model_kwargs={"width": 0.2})
    with pytest.raises(ValueError, match="cannot initialise"):
        runtime.init_model(other, str(tmp_path / "teacher"), None)


def test_reported_checkpoint_restores_model_optimizer_scheduler(tmp_path):
    torch.manual_seed(0)
    model = TEACHER.build()
    optimizer = runtime.optimizer("sgd", model.parameters(), 0.1, 0.9, 1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 0.5**e)
    model(torch.randn(2, 3, 4, 16, 16)).sum().backward()
    optimizer.step()
    scheduler.step()
    kept = tmp_path / "reported"

    def report(metrics, directory):
        shutil.copytree(directory, kept)

    state = {"epoch": 1, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "lam": 0.3}
    runtime.report_epoch(report, {"epoch": 1}, model, TEACHER, state)
    loaded, config = load_checkpoint(str(kept))  # the project's checkpoint format
    assert config == TEACHER

    fresh = TEACHER.build()
    fresh_optimizer = runtime.optimizer("sgd", fresh.parameters(), 0.1, 0.9, 1e-3)
    fresh_scheduler = torch.optim.lr_scheduler.LambdaLR(fresh_optimizer, lambda e: 0.5**e)
    restored = runtime.restore(Checkpoint.from_directory(str(kept)), fresh, fresh_optimizer, fresh_scheduler)
    assert restored == {"epoch": 1, "lam": 0.3}
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert fresh_scheduler.last_epoch == 1
    for name, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    momentum = [s["momentum_buffer"] for s in fresh_optimizer.state_dict()["state"].values()]
    assert momentum and all(torch.isfinite(m).all() for m in momentum)
    assert runtime.restore(None, fresh, fresh_optimizer, fresh_scheduler) == {"epoch": 0}
