"""raycondi.models.checkpoint: exact round trips (local and S3), and refusals of missing, mismatched or
tampered files, each naming the file."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from raycondi.models import (
    CheckpointConfig,
    CheckpointError,
    build_model,
    build_student,
    for_inference,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)

CLIP = (3, 3, 4, 32, 32)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # One intra-op thread: where cores are shared (CI, several test runs at once), a second OpenMP thread
    # waiting for a core stalls every op (measured on 2 busy cores: ResNeXt-101 step 25 s vs 3 s).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _trained_student() -> tuple[nn.Module, CheckpointConfig]:
    """A small student whose weights and batch-norm statistics differ from a fresh build."""
    torch.manual_seed(0)
    student = build_student("shufflenetv2_3d", 3, width=0.25)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.1 * torch.randn_like(p))
        student(torch.randn(CLIP))  # a training-mode forward moves the batch-norm running statistics
    config = CheckpointConfig(
        architecture="shufflenetv2_3d",
        num_classes=3,
        student=True,
        model_kwargs={"width": 0.25},
        class_names=("jump", "run", "wave"),
        clip_len=4,
        crop_size=32,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    return student, config


@pytest.fixture
def saved(tmp_path) -> tuple[nn.Module, CheckpointConfig, str]:
    student, config = _trained_student()
    directory = str(tmp_path / "ckpt")
    save_checkpoint(student, directory, config)
    return student, config, directory


def _assert_same_outputs(a: nn.Module, b: nn.Module) -> None:
    clip = torch.randn(CLIP)
    a.eval()
    b.eval()
    with torch.no_grad():
        out_a, out_b = a(clip), b(clip)
    out_a, out_b = (out_a,) if torch.is_tensor(out_a) else out_a, (out_b,) if torch.is_tensor(out_b) else out_b
    assert all(torch.isfinite(x).all() for x in out_a)
    assert all(torch.equal(x, y) for x, y in zip(out_a, out_b, strict=True))


def test_student_round_trip_is_exact(saved):
    student, config, directory = saved
    assert sorted(os.listdir(directory)) == ["config.json", "model.pt"]
    loaded, loaded_config = load_checkpoint(directory)
    assert loaded_config == config
    assert type(loaded) is type(student)
    _assert_same_outputs(student, loaded)
    # The running batch-norm statistics travel too, not only the parameters.
    assert torch.equal(loaded.backbone.conv1[1].running_mean, student.backbone.conv1[1].running_mean)


def test_config_json_is_readable(saved):
    _, _, directory = saved
    with open(os.path.join(directory, "config.json")) as f:
        data = json.load(f)
    assert data == {
        "architecture": "shufflenetv2_3d",
        "num_classes": 3,
        "student": True,
        "model_kwargs": {"width": 0.25},
        "class_names": ["jump", "run", "wave"],
        "clip_len": 4,
        "crop_size": 32,
        "resize": 32,
        "frame_step": 1,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
    }


@pytest.mark.parametrize("resize", [40, (128, 171)])
def test_the_resize_travels_with_the_weights(tmp_path, resize):
    student, config = _trained_student()
    config = CheckpointConfig(**{**config.__dict__, "resize": resize})
    save_checkpoint(student, str(tmp_path), config)
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["resize"] == (list(resize) if isinstance(resize, tuple) else resize)
    loaded = read_checkpoint_config(str(tmp_path))
    assert loaded == config and loaded.resize == resize
    assert loaded.frame_size == ((40, 40) if resize == 40 else (128, 171))


def test_a_config_without_resize_loads_and_says_what_it_assumed(saved, caplog):
    _, config, directory = saved
    path = os.path.join(directory, "config.json")
    with open(path) as f:
        data = json.load(f)
    del data["resize"]  # as written before raycondi recorded the resize
    with open(path, "w") as f:
        json.dump(data, f)
    caplog.set_level("WARNING", logger="raycondi.checkpoint")
    loaded = read_checkpoint_config(directory)
    assert loaded.resize == 32 and loaded == config
    assert caplog.messages == [
        f"{path} records no resize (written before raycondi recorded its preprocessing): assuming frames resized to "
        'a short side of crop_size = 32 pixels; if the model was trained on `prepare --size S` clip shards, add '
        '"resize": S to it']
    load_checkpoint(directory)  # once per file and process
    assert len(caplog.messages) == 1


def test_read_checkpoint_config_reads_no_weights(saved):
    _, config, directory = saved
    os.remove(os.path.join(directory, "model.pt"))
    assert read_checkpoint_config(directory) == config
    with pytest.raises(CheckpointError, match="model.pt: missing"):
        load_checkpoint(directory)


@pytest.mark.parametrize("resize, message", [
    (24, "resize 24 gives 24x24 frames, smaller than crop_size 32"),
    ((40, 30), r"resize \(40, 30\) gives 40x30 frames, smaller than crop_size 32"),
    ((40,), r"resize must be a short side S or a pair \(H, W\) of pixels, got \(40,\)"),
    (40.0, "resize must be a short side S or a pair"),
])
def test_bad_resize_is_refused(resize, message):
    with pytest.raises(ValueError, match=message):
        CheckpointConfig("resnet3d", 3, crop_size=32, resize=resize)


def test_plain_model_round_trip_unwraps_data_parallel(tmp_path):
    torch.manual_seed(1)
    model = build_model("mobilenetv2_3d", 4, width=0.2)
    config = CheckpointConfig("mobilenetv2_3d", 4, model_kwargs={"width": 0.2})
    save_checkpoint(nn.DataParallel(model), str(tmp_path), config)
    loaded, loaded_config = load_checkpoint(str(tmp_path))
    assert loaded_config == config and loaded_config.student is False
    assert loaded_config.mean == (0.43216, 0.394666, 0.37645)  # Kinetics statistics by default
    _assert_same_outputs(model, loaded)


def test_s3_round_trip(s3_server):
    student, config = _trained_student()
    directory = s3_server.uri("checkpoints/student-1")
    save_checkpoint(student, directory, config)
    listing = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix="checkpoints/student-1/")
    assert sorted(k["Key"] for k in listing["Contents"]) == [
        "checkpoints/student-1/config.json",
        "checkpoints/student-1/model.pt",
    ]
    loaded, loaded_config = load_checkpoint(directory)
    assert loaded_config == config
    _assert_same_outputs(student, loaded)
    with pytest.raises(CheckpointError, match=r"^s3://raycondi-test/checkpoints/nothing/config.json: missing"):
        load_checkpoint(s3_server.uri("checkpoints/nothing"))


def test_save_refuses_a_model_that_does_not_fit_the_config(tmp_path):
    student, config = _trained_student()
    wrong = CheckpointConfig("shufflenetv2_3d", 3, student=True, model_kwargs={"width": 0.5})
    with pytest.raises(ValueError, match=r"model does not fit shufflenetv2_3d .* shapes differ"):
        save_checkpoint(student, str(tmp_path / "x"), wrong)
    # A student under a plain-model config: the plain model's 338 keys are 336 backbone keys and the classifier's
    # 2; the student's 340 are the same 336 under "backbone." and the two heads' 4. No key matches.
    plain = CheckpointConfig("shufflenetv2_3d", 3, model_kwargs={"width": 0.25})
    mismatch = r"missing 338 keys \(conv1.0.weight, .*; 340 unexpected keys \(backbone.conv1"
    with pytest.raises(ValueError, match=mismatch):
        save_checkpoint(student, str(tmp_path / "x"), plain)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["config.json", "model.pt"])
def test_missing_file_is_named(saved, name):
    _, _, directory = saved
    os.remove(os.path.join(directory, name))
    path = os.path.join(directory, name)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(directory)
    assert raised.value.uri == path
    assert str(raised.value) == f"{path}: missing; a checkpoint directory holds config.json and model.pt"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", r"not a raycondi checkpoint config: Expecting property name"),
        ("[1, 2]", r"expected a JSON object, got list"),
        ('{"architecture": "r3d_18"}', r"missing 1 required positional argument: 'num_classes'"),
        ('{"architecture": "r3d_18", "num_classes": 3, "dropout": 0.5}', r"unknown keys \['dropout'\]"),
        ('{"architecture": "r3d_18", "num_classes": 3, "class_names": ["a"]}', r"1 class_names for num_classes=3"),
        ('{"architecture": "r3d_18", "num_classes": "3", "student": "no"}', r"student must be bool, got 'no'; "
                                                                           r"num_classes must be int, got '3'"),
        ('{"architecture": "resnet50", "num_classes": 3}', r"cannot build the model it describes: unknown model"),
        ('{"architecture": "resnext3d", "num_classes": 3, "model_kwargs": {"depth": 7}}', r"depth must be one of"),
    ],
)
def test_bad_config_is_named(saved, text, reason):
    _, _, directory = saved
    path = os.path.join(directory, "config.json")
    with open(path, "w") as f:
        f.write(text)
    with pytest.raises(CheckpointError, match=rf"^{path}: .*{reason}") as raised:
        load_checkpoint(directory)
    assert raised.value.uri == path


def test_weights_for_another_architecture_are_named(saved):
    _, config, directory = saved
    path = os.path.join(directory, "config.json")
    with open(path, "w") as f:  # same family, other width: every shape differs
        f.write(CheckpointConfig("shufflenetv2_3d", 3, student=True, model_kwargs={"width": 0.5}).to_json())
    with pytest.raises(CheckpointError, match=r"model.pt: does not fit shufflenetv2_3d as described in config.json: "
                       r"266 shapes differ, saved vs expected \(backbone.features.0.branch1.1.0.weight "
                       r"\(16, 24, 1, 1, 1\) vs \(24, 24, 1, 1, 1\), "):
        load_checkpoint(directory)
    with open(path, "w") as f:  # same backbone, one class more
        f.write(CheckpointConfig("shufflenetv2_3d", 4, student=True, model_kwargs={"width": 0.25}).to_json())
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(directory)
    assert str(raised.value) == (
        f"{directory}/model.pt: does not fit shufflenetv2_3d as described in config.json: 2 shapes differ, "
        "saved vs expected (class_head.weight (3, 1024) vs (4, 1024), class_head.bias (3,) vs (4,))"
    )


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``: what a malicious checkpoint would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


class _Weights:
    """An arbitrary object, not a tensor."""

    def __init__(self) -> None:
        self.values = [1.0, 2.0]


@pytest.mark.parametrize("payload", ["code", "object", "object_in_state_dict"])
def test_tampered_model_pt_is_refused_without_running_it(saved, tmp_path, payload):
    _, _, directory = saved
    marker = tmp_path / "pwned"
    path = os.path.join(directory, "model.pt")
    obj = {
        "code": _Payload(str(marker)),
        "object": _Weights(),
        "object_in_state_dict": {"backbone.conv1.0.weight": _Weights()},
    }[payload]
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=r"^" + path + r": refused: not a plain state dict of tensors") as raised:
        load_checkpoint(directory)
    assert raised.value.uri == path
    assert not marker.exists()
    if payload == "code":  # the file really does run code under a plain unpickler
        with open(path, "rb") as f:
            torch.load(f, weights_only=False)
        assert marker.exists()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("garbage", r"refused: not a plain state dict of tensors"),
        ("truncated", r"refused: not a plain state dict of tensors"),
        ("list", r"refused: expected a state dict of tensors, got list"),
    ],
)
def test_model_pt_that_is_not_a_state_dict_is_refused(saved, damage, reason):
    _, _, directory = saved
    path = os.path.join(directory, "model.pt")
    with open(path, "rb") as f:
        original = f.read()
    if damage == "list":
        torch.save([torch.zeros(1)], path)  # loads under weights_only, but is not a state dict
    else:
        with open(path, "wb") as f:
            f.write(b"not a torch file" if damage == "garbage" else original[: len(original) // 2])
    with pytest.raises(CheckpointError, match=rf"^{path}: {reason}"):
        load_checkpoint(directory)


def test_config_validation():
    with pytest.raises(ValueError, match="2 class_names for num_classes=3"):
        CheckpointConfig("r3d_18", 3, class_names=("a", "b"))
    with pytest.raises(ValueError, match="std > 0"):
        CheckpointConfig("r3d_18", 3, std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match=r"frame_step must be in \[1, clip_len=8\], got 9"):
        CheckpointConfig("r3d_18", 3, clip_len=8, frame_step=9)
    config = CheckpointConfig("r3d_18", 3, class_names=["a", "b", "c"], mean=[0.1, 0.2, 0.3])
    assert config.class_names == ("a", "b", "c") and config.mean == (0.1, 0.2, 0.3)
    assert CheckpointConfig.from_json(config.to_json()) == config
    # A config.json written before frame_step existed reads as the paper's every-frame input.
    older = json.loads(config.to_json())
    del older["frame_step"]
    assert CheckpointConfig.from_json(json.dumps(older)).frame_step == 1


@pytest.mark.parametrize("name, kwargs", [
    ("shufflenetv2_3d", {"width": 0.5}), ("mobilenetv2_3d", {"width": 0.45}),  # depthwise convolutions
    ("resnext3d", {"depth": 50}), ("resnet3d", {"depth": 10, "width": 0.25}),  # grouped, dense
])
def test_for_inference_lays_out_cpu_weights_and_predicts_the_same(name, kwargs):
    torch.manual_seed(0)
    model = build_student(name, 5, **kwargs)
    x = torch.rand(2, 4, 32, 32, 3).permute(0, 4, 1, 2, 3)  # a (B, T, H, W, 3) clip batch permuted
    with torch.inference_mode():
        expected = model.eval()(x.contiguous())
        fast = for_inference(model, "cpu")
        got = fast(x)
    assert not fast.training
    weights = [p for p in fast.parameters() if p.dim() == 5]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in weights)
    assert any(not p.is_contiguous() for p in weights)  # NDHWC indeed (1x1x1 kernels are both)
    for e, g in zip(expected, got):  # class logits and confidence logit
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)
