"""`raycondi import-weights`: every format a user's weights come in, built here from models built here (nothing is
downloaded), imported through the CLI, and checked by the logits the imported checkpoint computes."""

from __future__ import annotations

import copy
import pathlib

import pytest
import torch
from torch import nn

from raycondi.cli import build_parser, main
from raycondi.models import build_model, load_checkpoint, read_checkpoint_config
from raycondi.models.checkpoint import KINETICS_MEAN, KINETICS_STD, CheckpointError
from raycondi.models.imports import FORMATS, ImportConfig, import_weights, read_classes, torchvision_metadata

REFERENCE_KEYS = pathlib.Path(__file__).parent / "data" / "efficient3dcnns_shufflenetv2_keys.txt"
CLIP = (2, 3, 4, 32, 32)


def _source(name: str, num_classes: int = 5, **kwargs) -> nn.Module:
    """A model in eval mode with random batch-norm statistics, so the buffers matter to its logits too."""
    torch.manual_seed(0)
    model = build_model(name, num_classes, **kwargs)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _logits(model: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model.eval()(clip)
    return out[0] if isinstance(out, tuple) else out


def _import(tmp_path, source: str, *options: str) -> tuple[nn.Module, object]:
    out = str(tmp_path / "imported")
    assert main(["import-weights", source, out, *options]) == 0
    return load_checkpoint(out)


def _assert_same_logits(source: nn.Module, imported: nn.Module) -> None:
    clip = torch.randn(CLIP, generator=torch.Generator().manual_seed(1))
    expected = _logits(source, clip)
    assert expected.abs().max() > 1e-3  # a real output, not zeros
    torch.testing.assert_close(_logits(imported, clip), expected, atol=1e-4, rtol=0)


def test_plain_state_dict(tmp_path, capsys):
    source = _source("mobilenetv2_3d", width=0.2)
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    imported, config = _import(tmp_path, str(tmp_path / "weights.pt"), "--architecture", "mobilenetv2_3d",
                               "--option", "width=0.2", "--clip-len", "4", "--crop-size", "32")
    _assert_same_logits(source, imported)
    assert (config.num_classes, config.class_names, config.clip_len, config.crop_size, config.resize) == (
        5, (), 4, 32, 32)
    assert (config.mean, config.std, config.model_kwargs) == (KINETICS_MEAN, KINETICS_STD, {"width": 0.2})
    out = capsys.readouterr().out
    assert "as state-dict: 314 tensors" in out and f"checkpoint: {tmp_path / 'imported'}" in out


def test_data_parallel_training_checkpoint(tmp_path, capsys):
    source = _source("resnet3d", depth=10, width=0.25)
    wrapped = nn.DataParallel(source)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.1, momentum=0.9)
    wrapped.train()(torch.randn(CLIP)).sum().backward()
    optimizer.step()  # an optimizer state with momentum buffers, as a real checkpoint has
    torch.save({"epoch": 12, "arch": "resnet-10", "state_dict": wrapped.state_dict(),
                "optimizer": optimizer.state_dict(), "best_prec1": 0.71}, tmp_path / "save_12.pth")
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    imported, _ = _import(tmp_path, str(tmp_path / "save_12.pth"), "--architecture", "resnet3d",
                          "--option", "depth=10", "--option", "width=0.25")
    _assert_same_logits(source, imported)
    assert "as checkpoint, wrapper prefixes stripped" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["auto", "efficient-3dcnns"])
def test_efficient_3dcnns_shufflenet_names(tmp_path, fmt, capsys):
    """The reference's key names, from its model (the data file), in the order its state dict lists them."""
    reference_names = [line for line in REFERENCE_KEYS.read_text().splitlines() if not line.startswith("#")]
    source = _source("shufflenetv2_3d", width=0.25)
    assert len(reference_names) == len(source.state_dict()) == 338
    renamed = {f"module.{name}": tensor for name, tensor in zip(reference_names, source.state_dict().values(),
                                                                 strict=True)}
    torch.save({"epoch": 1, "arch": "shufflenetv2", "state_dict": renamed, "optimizer": {}, "best_prec1": 0.0},
               tmp_path / "kinetics_shufflenetv2_0.25x_RGB_16_best.pth")
    imported, _ = _import(tmp_path, str(tmp_path / "kinetics_shufflenetv2_0.25x_RGB_16_best.pth"), "--format", fmt,
                          "--architecture", "shufflenetv2_3d", "--option", "width=0.25")
    _assert_same_logits(source, imported)
    assert "Efficient-3DCNNs names mapped" in capsys.readouterr().out


def test_reference_names_need_the_shufflenet_architecture(tmp_path):
    reference_names = [line for line in REFERENCE_KEYS.read_text().splitlines() if not line.startswith("#")]
    state = dict(zip(reference_names, _source("shufflenetv2_3d", width=0.25).state_dict().values(), strict=True))
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="banch1/banch2.*use --architecture shufflenetv2_3d"):
        import_weights(ImportConfig(str(tmp_path / "w.pt"), str(tmp_path / "out"), architecture="mobilenetv2_3d"))


def test_torch_compiled_state_dict(tmp_path):
    source = _source("shufflenetv2_3d", width=0.5)
    compiled = torch.compile(source)  # compiles on its first call, never made here: only the names change
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())
    torch.save(compiled.state_dict(), tmp_path / "compiled.pt")
    imported, _ = _import(tmp_path, str(tmp_path / "compiled.pt"), "--architecture", "shufflenetv2_3d",
                          "--option", "width=0.5")
    _assert_same_logits(source, imported)


def test_torchvision_hub_file_with_its_metadata(tmp_path):
    from torchvision.models.video import r2plus1d_18

    torch.manual_seed(0)
    source = r2plus1d_18(weights=None).eval()  # 400 Kinetics classes, torchvision's own names
    path = tmp_path / "r2plus1d_18-91a641e6.pth"  # as torch.hub caches it
    torch.save(source.state_dict(), path)
    imported, config = _import(tmp_path, str(path), "--torchvision-weights", "R2Plus1D_18_Weights.KINETICS400_V1")
    _assert_same_logits(source, imported)
    assert config.architecture == "r2plus1d_18" and config.num_classes == len(config.class_names) == 400
    assert config.class_names[:2] == ("abseiling", "air drumming") and config.class_names[-1] == "zumba"
    assert (config.resize, config.crop_size, config.clip_len) == ((128, 171), 112, 16)
    assert config.mean == (0.43216, 0.394666, 0.37645) and config.std == (0.22803, 0.22145, 0.216989)


def test_torchvision_metadata_yields_to_given_options(tmp_path):
    from torchvision.models.video import r3d_18

    torch.save(r3d_18(weights=None, num_classes=3).state_dict(), tmp_path / "r3d.pt")
    (tmp_path / "names.txt").write_text("a\nb\nc\n")
    summary = import_weights(ImportConfig(str(tmp_path / "r3d.pt"), str(tmp_path / "out"), classes=str(tmp_path /
                             "names.txt"), crop_size=96, torchvision_weights="R3D_18_Weights.KINETICS400_V1"))
    assert (summary.config.class_names, summary.config.crop_size, summary.config.resize) == (("a", "b", "c"), 96,
                                                                                            (128, 171))


def test_a_pickled_object_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "the_payload_ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "hook": Payload()}, tmp_path / "evil.pth")
    assert not marker.exists()
    code = main(["import-weights", str(tmp_path / "evil.pth"), str(tmp_path / "out"), "--architecture", "r3d_18"])
    assert code == 2 and not marker.exists()
    err = capsys.readouterr().err
    assert f"{tmp_path / 'evil.pth'}: refused: it holds a pickled object (io.open)" in err
    assert not (tmp_path / "out").exists()


def test_missing_unexpected_and_misshaped_tensors_in_one_error(tmp_path):
    state = _source("shufflenetv2_3d", width=0.25).state_dict()
    del state["conv1.0.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["conv_last.0.weight"] = torch.zeros(3, 3, 1, 1, 1)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as raised:
        import_weights(ImportConfig(str(tmp_path / "w.pt"), str(tmp_path / "out"), architecture="shufflenetv2_3d",
                                    model_kwargs={"width": 0.25}))
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'w.pt'}: does not fit shufflenetv2_3d")
    assert "missing 1 keys (conv1.0.weight)" in message and "1 unexpected keys (extra.weight)" in message
    assert "1 shapes differ, saved vs expected (conv_last.0.weight (3, 3, 1, 1, 1) vs (1024, 128, 1, 1, 1))" in message


def test_other_classes_need_new_classifier(tmp_path, capsys):
    source = _source("resnet3d", num_classes=400, depth=10, width=0.25)
    torch.save(source.state_dict(), tmp_path / "k400.pt")
    (tmp_path / "classInd.txt").write_text("2 Run\n1 Jump\n3 Swim\n")
    options = [str(tmp_path / "k400.pt"), str(tmp_path / "out"), "--architecture", "resnet3d", "--option", "depth=10",
               "--option", "width=0.25", "--classes", str(tmp_path / "classInd.txt")]
    assert main(["import-weights", *options]) == 2
    assert "classifier fc has 400 classes, --classes gives 3; add --new-classifier" in capsys.readouterr().err
    assert main(["import-weights", *options, "--new-classifier"]) == 0
    assert "new classifier fc: 3 classes, initialised for fine-tuning" in capsys.readouterr().out
    model, config = load_checkpoint(str(tmp_path / "out"))
    assert config.class_names == ("Jump", "Run", "Swim") and model.fc.weight.shape == (3, model.fc.in_features)
    kept = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in kept.items())


def test_student_keeps_the_classifier_as_its_class_head(tmp_path):
    source = _source("shufflenetv2_3d", width=0.25)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    student, config = _import(tmp_path, str(tmp_path / "w.pt"), "--student", "--architecture", "shufflenetv2_3d",
                              "--option", "width=0.25")
    assert config.student and type(student).__name__ == "TwoHeadedStudent"
    _assert_same_logits(source, student)
    assert torch.equal(student.confidence_head.bias, torch.zeros(1))  # fresh: z~ starts at 0.5
    assert 0 < student.confidence_head.weight.std() < 0.02


def test_classes_from_a_number_a_class_index_or_a_names_file(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 ApplyLipstick\n3 Archery\n")
    (tmp_path / "names.txt").write_text("\ufeffabseiling\n\nair drumming\n")
    (tmp_path / "gap.txt").write_text("1 a\n3 b\n")
    (tmp_path / "twice.txt").write_text("a\na\n")
    assert read_classes("101") == (101, ())
    assert read_classes(str(tmp_path / "classInd.txt")) == (3, ("ApplyEyeMakeup", "ApplyLipstick", "Archery"))
    assert read_classes(str(tmp_path / "names.txt")) == (2, ("abseiling", "air drumming"))
    for text, message in [("0", "expected a number >= 1"), (str(tmp_path / "nope.txt"), "neither a number"),
                          (str(tmp_path / "gap.txt"), "not 1..N"), (str(tmp_path / "twice.txt"), "repeat")]:
        with pytest.raises(ValueError, match=message):
            read_classes(text)


def test_bad_options_are_named(tmp_path, capsys):
    torch.save(_source("shufflenetv2_3d", width=0.25).state_dict(), tmp_path / "w.pt")
    src, out = str(tmp_path / "w.pt"), str(tmp_path / "out")
    cases = [
        (["--architecture", "shufflenetv2_3d", "--option", "depth=101"], "--option {'depth': 101}: not options of"),
        (["--architecture", "nope"], "unknown model 'nope'"),
        ([], "give exactly one of --architecture and --torchvision-weights"),
        (["--torchvision-weights", "Nope_Weights.X"], "not a torchvision weights enum member"),
        (["--architecture", "shufflenetv2_3d", "--option", "width=0.25", "--crop-size", "64", "--resize", "32"],
         "smaller than crop_size 64"),
        (["--architecture", "shufflenetv2_3d", "--format", "checkpoint"], "not a training checkpoint"),
    ]
    for options, message in cases:
        assert main(["import-weights", src, out, *options]) == 2, options
        assert message in capsys.readouterr().err, options
    assert main(["import-weights", str(tmp_path / "none.pt"), out, "--architecture", "r3d_18"]) == 2
    assert "none.pt: no such weights file or object" in capsys.readouterr().err


def test_an_existing_checkpoint_is_not_overwritten(tmp_path, capsys):
    torch.save(_source("shufflenetv2_3d", width=0.25).state_dict(), tmp_path / "w.pt")
    options = [str(tmp_path / "w.pt"), str(tmp_path / "out"), "--architecture", "shufflenetv2_3d",
               "--option", "width=0.25"]
    assert main(["import-weights", *options]) == 0
    before = (tmp_path / "out" / "model.pt").read_bytes()
    assert main(["import-weights", *options, "--clip-len", "8"]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert (tmp_path / "out" / "model.pt").read_bytes() == before


def test_from_and_to_s3(s3_server, tmp_path):
    source = _source("shufflenetv2_3d", width=0.25)
    torch.save(copy.deepcopy(source).state_dict(), tmp_path / "w.pt")
    s3_server.client().upload_file(str(tmp_path / "w.pt"), s3_server.bucket, "weights/w.pt")
    out = s3_server.uri("imported/teacher")
    assert main(["import-weights", s3_server.uri("weights/w.pt"), out, "--architecture", "shufflenetv2_3d",
                 "--option", "width=0.25", "--endpoint-url", s3_server.endpoint_url]) == 0
    assert read_checkpoint_config(out).model_kwargs == {"width": 0.25}
    _assert_same_logits(source, load_checkpoint(out)[0])


def test_cli_formats_are_the_librarys():
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    fmt = next(a for a in commands.choices["import-weights"]._actions if a.dest == "format")
    assert tuple(fmt.choices) == FORMATS


def test_a_student_with_a_new_classifier_keeps_the_backbone(tmp_path):
    source = _source("resnet3d", num_classes=400, depth=10, width=0.25)
    torch.save(source.state_dict(), tmp_path / "k400.pt")
    summary = import_weights(ImportConfig(str(tmp_path / "k400.pt"), str(tmp_path / "out"), architecture="resnet3d",
                                          model_kwargs={"depth": 10, "width": 0.25}, classes="7", student=True,
                                          new_classifier=True))
    student, config = load_checkpoint(str(tmp_path / "out"))
    assert (summary.replaced, summary.tensors, config.num_classes) == ("fc", len(source.state_dict()), 7)
    assert student.class_head.weight.shape == (7, source.fc.in_features)
    kept = {f"backbone.{k}": v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(student.state_dict()[k], v) for k, v in kept.items())


def test_weights_without_a_classifier_get_a_new_one_when_asked(tmp_path, capsys):
    source = _source("shufflenetv2_3d", width=0.25)
    backbone = {k: v for k, v in source.state_dict().items() if not k.startswith("classifier.")}
    torch.save(backbone, tmp_path / "features.pt")
    options = [str(tmp_path / "features.pt"), str(tmp_path / "out"), "--architecture", "shufflenetv2_3d",
               "--option", "width=0.25"]
    assert main(["import-weights", *options]) == 2
    assert "holds no classifier.1 classifier to count the classes from; give --classes and --new-classifier" in \
        capsys.readouterr().err
    assert main(["import-weights", *options, "--classes", "4"]) == 2
    assert "classifier classifier.1 is not in the file, --classes gives 4; add --new-classifier" in \
        capsys.readouterr().err
    assert main(["import-weights", *options, "--classes", "4", "--new-classifier"]) == 0
    model, config = load_checkpoint(str(tmp_path / "out"))
    assert config.num_classes == 4 and all(torch.equal(model.state_dict()[k], v) for k, v in backbone.items())


def test_what_is_not_a_weights_file_is_named_as_such(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not weights")
    assert main(["import-weights", str(tmp_path / "notes.txt"), str(tmp_path / "out"), "--architecture",
                 "r3d_18"]) == 2
    assert f"{tmp_path / 'notes.txt'}: not a file torch.save wrote" in capsys.readouterr().err
    torch.save(_source("shufflenetv2_3d", width=0.25).state_dict(), tmp_path / "w.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "w.pt").read_bytes()[:5000])  # a download cut short
    assert main(["import-weights", str(tmp_path / "cut.pt"), str(tmp_path / "out"), "--architecture",
                 "shufflenetv2_3d"]) == 2
    assert f"{tmp_path / 'cut.pt'}: not a file torch.save wrote (" in capsys.readouterr().err
    torch.save({"module.fc.weight": torch.zeros(2, 2), "fc.weight": torch.ones(2, 2)}, tmp_path / "both.pt")
    assert main(["import-weights", str(tmp_path / "both.pt"), str(tmp_path / "out"), "--architecture", "r3d_18"]) == 2
    assert "'fc.weight' and another tensor are both 'fc.weight' once the" in capsys.readouterr().err


def test_torchvision_file_of_other_classes_names_the_metadata(tmp_path, capsys):
    from torchvision.models.video import r3d_18

    torch.save(r3d_18(weights=None, num_classes=7).state_dict(), tmp_path / "r3d.pt")
    assert main(["import-weights", str(tmp_path / "r3d.pt"), str(tmp_path / "out"), "--torchvision-weights",
                 "R3D_18_Weights.KINETICS400_V1"]) == 2
    assert "classifier fc has 7 classes, torchvision's metadata has 400" in capsys.readouterr().err


def test_torchvision_metadata_of_the_transformers_and_s3d():
    mvit = torchvision_metadata("MViT_V1_B_Weights.KINETICS400_V1")
    assert (mvit["architecture"], mvit["resize"], mvit["crop_size"], mvit["clip_len"]) == ("mvit_v1_b", 256, 224, 16)
    assert mvit["mean"] == (0.45, 0.45, 0.45) and mvit["std"] == (0.225, 0.225, 0.225)
    s3d = torchvision_metadata("S3D_Weights.KINETICS400_V1")
    assert (s3d["architecture"], s3d["resize"], s3d["crop_size"], s3d["clip_len"]) == ("s3d", (256, 256), 224, 128)
    for name in ("video.R3D", "MViT_V2_S_Weights.KINETICS400_V1"):
        with pytest.raises(ValueError, match="--torchvision-weights"):
            torchvision_metadata(name)
