"""raycondi.models: parameter counts against the papers, forward/backward of every registered network and
its student on CPU, input-shape checks, and the registry's errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raycondi.models import (
    InputShapeError,
    TwoHeadedStudent,
    build_feature_extractor,
    build_model,
    build_student,
    list_models,
    model_info,
)

CLIPS = [(2, 3, 16, 112, 112), (2, 3, 8, 64, 64)]
# torchvision models with fixed input geometry, and a clip each accepts (batch 1 keeps CPU time down).
FIXED_INPUT = {"s3d": (1, 3, 14, 224, 224), "mvit_v1_b": (1, 3, 16, 224, 224)}
SLOW = {"mvit_v1_b"}
NUM_CLASSES = 5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # One intra-op thread: where cores are shared (CI, several test runs at once), a second OpenMP thread
    # waiting for a core stalls every op (measured on 2 busy cores: ResNeXt-101 step 25 s vs 3 s).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(previous)


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return build_model(name, num_classes, **kwargs)


def _assert_trains(output: torch.Tensor, model: nn.Module) -> None:
    output.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "some parameter got no gradient"
    assert all(torch.isfinite(g).all() for g in grads)


# Köpüklü et al. Table 2 / paper Table II, in millions of parameters.
@pytest.mark.parametrize(
    ("name", "kwargs", "num_classes", "millions"),
    [
        ("resnext3d", {"depth": 101}, 400, 48.34),
        ("shufflenetv2_3d", {"width": 2.0}, 600, 6.64),
        ("shufflenetv2_3d", {"width": 1.5}, 600, 3.16),
        ("shufflenetv2_3d", {"width": 1.0}, 600, 1.91),
        ("shufflenetv2_3d", {"width": 0.25}, 600, 0.83),
        ("mobilenetv2_3d", {"width": 1.0}, 600, 3.12),
        ("mobilenetv2_3d", {"width": 0.7}, 600, 2.05),
        ("mobilenetv2_3d", {"width": 0.45}, 600, 1.40),
        ("mobilenetv2_3d", {"width": 0.2}, 600, 0.96),
    ],
)
def test_parameter_count_matches_paper(name, kwargs, num_classes, millions):
    count = _num_params(_meta_model(name, num_classes, **kwargs))
    assert abs(count / 1e6 - millions) / millions < 0.005, f"{name} {kwargs}: {count / 1e6:.3f} M vs {millions} M"


def test_resnext_depths_share_one_builder():
    # The depths differ only in bottlenecks per stage: 50 -> 101 adds 17 to stage 3, 101 -> 152 adds
    # 4 to stage 2 and 13 to stage 3. An identity bottleneck at planes p has 2p^2 + 27p^2/32 + 2p^2 conv
    # weights (1x1x1 2p->p, grouped 3x3x3 p->p in 32 groups, 1x1x1 p->2p) and 2(p + p + 2p) BN parameters.
    def bottleneck(p: int) -> int:
        return 2 * p * p + 27 * p * p // 32 + 2 * p * p + 2 * (p + p + 2 * p)

    n50, n101, n152 = (_num_params(_meta_model("resnext3d", 400, depth=d)) for d in (50, 101, 152))
    assert n101 - n50 == 17 * bottleneck(512)
    assert n152 - n101 == 4 * bottleneck(256) + 13 * bottleneck(512)
    assert _num_params(_meta_model("resnext3d", 400)) == n101  # default depth


def test_resnet3d_matches_hara_and_scales_with_width():
    # Hara et al.'s Table 2 lists 33.2 M for 3D ResNet-18 (shortcut A: parameter-free); shortcut B adds
    # three 1x1x1 projections with batch norm, 64->128, 128->256, 256->512.
    projections = sum(i * o + 2 * o for i, o in ((64, 128), (128, 256), (256, 512)))
    n18 = _num_params(_meta_model("resnet3d", 400, depth=18))
    assert round((n18 - projections) / 1e6, 1) == 33.2
    # Depth 10 drops one basic block (two 3x3x3 convolutions + batch norms) from each stage.
    block = sum(2 * (27 * p * p + 2 * p) for p in (64, 128, 256, 512))
    assert n18 - _num_params(_meta_model("resnet3d", 400, depth=10)) == block
    # width=0.25: stages 16/32/64/128 wide; the stem, every block and the classifier scale with it.
    quarter = _num_params(_meta_model("resnet3d", 6, depth=10, width=0.25))
    stem = 3 * 16 * 343 + 2 * 16
    blocks = sum(2 * (27 * p * p + 2 * p) for p in (16, 32, 64, 128))
    first_convs = sum(27 * i * o - 27 * o * o for i, o in ((16, 32), (32, 64), (64, 128)))
    shortcuts = sum(i * o + 2 * o for i, o in ((16, 32), (32, 64), (64, 128)))
    assert quarter == stem + blocks + first_convs + shortcuts + 128 * 6 + 6
    # The max-pool has no parameters; without it the network keeps time and space for stage 1.
    assert _num_params(_meta_model("resnet3d", 6, depth=10, width=0.25, max_pool=False)) == quarter


@pytest.mark.parametrize("shape", CLIPS, ids=lambda s: "x".join(map(str, s[2:])))
@pytest.mark.parametrize("name", list_models())
def test_model_forward_backward(name, shape):
    model = build_model(name, NUM_CLASSES)
    clip = torch.randn(shape)
    if name in FIXED_INPUT:
        with pytest.raises(InputShapeError) as raised:
            model(clip)
        assert str(raised.value).startswith(f"{name}: expected (B, 3, T, H, W) clips with ")
        assert raised.value.received == shape and str(shape) in str(raised.value)
        return
    logits = model(clip)
    assert logits.shape == (2, NUM_CLASSES)
    _assert_trains(logits, model)


@pytest.mark.parametrize("shape", CLIPS, ids=lambda s: "x".join(map(str, s[2:])))
@pytest.mark.parametrize("name", list_models())
def test_student_forward_backward(name, shape):
    student = build_student(name, NUM_CLASSES)
    clip = torch.randn(shape)
    if name in FIXED_INPUT:
        with pytest.raises(InputShapeError, match=rf"^{name}: expected .* got a clip of shape"):
            student(clip)
        return
    class_logits, confidence_logit = student(clip)
    assert class_logits.shape == (2, NUM_CLASSES)
    assert confidence_logit.shape == (2,)
    _assert_trains(class_logits.sum() + confidence_logit.sum(), student)


@pytest.mark.parametrize("student", [False, True], ids=["model", "student"])
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(FIXED_INPUT)]
)
def test_fixed_input_models_run_at_their_shape(name, student):
    shape = FIXED_INPUT[name]
    model = (build_student if student else build_model)(name, NUM_CLASSES)
    out = model(torch.randn(shape))
    if student:
        assert out[0].shape == (1, NUM_CLASSES) and out[1].shape == (1,)
        out = out[0].sum() + out[1].sum()
    else:
        assert out.shape == (1, NUM_CLASSES)
    _assert_trains(out, model)


@pytest.mark.parametrize(
    ("name", "shape", "accepted"),
    [
        ("s3d", (1, 3, 14, 224, 224), True),
        ("s3d", (1, 3, 32, 256, 320), True),
        ("s3d", (1, 3, 13, 224, 224), False),
        ("s3d", (1, 3, 16, 224, 223), False),
        ("mvit_v1_b", (4, 3, 16, 224, 224), True),
        ("mvit_v1_b", (1, 3, 17, 224, 224), False),
        ("mvit_v1_b", (1, 3, 16, 224, 256), False),
        ("swin3d_t", (1, 3, 1, 1, 1), True),
        ("r3d_18", (1, 3, 1, 1, 1), True),
        ("shufflenetv2_3d", (1, 3, 4, 32, 32), True),
        ("shufflenetv2_3d", (1, 16, 3, 112, 112), False),  # frames-first by mistake
        ("resnext3d", (3, 16, 112, 112), False),  # no batch dimension
    ],
)
def test_input_spec(name, shape, accepted):
    assert model_info(name).input_spec.accepts(shape) is accepted


def test_input_shape_error_names_model_expected_and_received():
    model = build_model("mvit_v1_b", NUM_CLASSES)
    with pytest.raises(InputShapeError) as raised:
        model(torch.zeros(1, 3, 8, 112, 112))
    assert str(raised.value) == (
        "mvit_v1_b: expected (B, 3, T, H, W) clips with T = 16 and H = W = 224, "
        "got a clip of shape (1, 3, 8, 112, 112)"
    )
    s3d_message = r"s3d: expected .* T >= 14 and H, W >= 224, got .*\(2, 3, 16, 112, 112\)"
    with pytest.raises(InputShapeError, match=s3d_message):
        build_model("s3d", NUM_CLASSES)(torch.zeros(2, 3, 16, 112, 112))
    with pytest.raises(InputShapeError, match=r"shufflenetv2_3d: .* got a clip of shape \(2, 16, 3, 64, 64\)"):
        build_model("shufflenetv2_3d", NUM_CLASSES)(torch.zeros(2, 16, 3, 64, 64))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("shufflenetv2_3d", {"width": w}) for w in (0.25, 0.5, 1.0, 1.5, 2.0)]
    + [("mobilenetv2_3d", {"width": w}) for w in (0.2, 0.45, 0.7, 1.0)]
    + [("resnext3d", {"depth": d}) for d in (50, 152)]
    + [("resnet3d", {"depth": d, "width": 0.25, "max_pool": m}) for d in (10, 34) for m in (True, False)],
)
def test_every_variant_takes_the_smallest_clip(name, kwargs):
    """The project's own networks take any clip of >= 4 frames and >= 32 pixels (pooling is adaptive)."""
    model = build_model(name, NUM_CLASSES, **kwargs)
    logits = model(torch.randn(2, 3, 4, 32, 48))
    assert logits.shape == (2, NUM_CLASSES)
    _assert_trains(logits, model)


@pytest.mark.parametrize(
    ("name", "kwargs", "dim"),
    [
        ("shufflenetv2_3d", {"width": 1.0}, 1024),
        ("shufflenetv2_3d", {"width": 2.0}, 2048),
        ("mobilenetv2_3d", {"width": 0.2}, 1280),
        ("mobilenetv2_3d", {"width": 1.0}, 1280),
        ("resnext3d", {}, 2048),
        ("resnet3d", {}, 512),
        ("resnet3d", {"depth": 10, "width": 0.25}, 128),
        ("r3d_18", {}, 512),
        ("mc3_18", {}, 512),
        ("r2plus1d_18", {}, 512),
        ("s3d", {}, 1024),
        ("mvit_v1_b", {}, 768),
        ("swin3d_t", {}, 768),
    ],
)
def test_feature_extractor_drops_only_the_classifier(name, kwargs, dim):
    with torch.device("meta"):
        features, feature_dim = build_feature_extractor(name, **kwargs)
        full = build_model(name, 600, **kwargs)
        student = build_student(name, 600, **kwargs)
    assert feature_dim == dim
    classifier = model_info(name).classifier
    assert isinstance(features.get_submodule(classifier), nn.Identity)
    # The student is the backbone plus a (dim -> 600) class head and a (dim -> 1) confidence head.
    assert _num_params(student) == _num_params(full) + dim + 1
    assert _num_params(features) == _num_params(full) - (dim + 1) * 600


def test_feature_extractor_output_is_the_pooled_features():
    features, dim = build_feature_extractor("shufflenetv2_3d", width=0.25)
    assert features(torch.randn(3, 3, 4, 32, 32)).shape == (3, dim)


def test_student_heads():
    student = build_student("mobilenetv2_3d", 7, width=0.2)
    assert isinstance(student, TwoHeadedStudent)
    assert (student.class_head.out_features, student.confidence_head.out_features) == (7, 1)
    student.eval()
    with torch.no_grad():
        class_logits, confidence_logit = student(torch.randn(4, 3, 4, 32, 32))
    # Heads start with zero bias and small weights: z̃ = sigmoid(logit) begins near 1/2.
    assert class_logits.shape == (4, 7) and confidence_logit.shape == (4,)
    assert torch.allclose(torch.sigmoid(confidence_logit), torch.full((4,), 0.5), atol=0.05)


def test_confidence_loss_trains_the_backbone_and_not_the_class_head():
    student = build_student("shufflenetv2_3d", 3, width=0.25)
    _, confidence_logit = student(torch.randn(2, 3, 4, 32, 32))
    confidence_logit.sum().backward()
    assert student.class_head.weight.grad is None
    assert student.confidence_head.weight.grad.abs().sum() > 0
    assert student.backbone.conv1[0].weight.grad.abs().sum() > 0


def test_unknown_name_lists_known_models():
    with pytest.raises(ValueError, match="unknown model 'resnet50'; known models: mc3_18, mobilenetv2_3d, .*swin3d_t"):
        build_model("resnet50", 10)
    with pytest.raises(ValueError, match="unknown model"):
        build_student("resnet50", 10)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("shufflenetv2_3d", {"width": 0.75}, r"width must be one of \[0.25, 0.5, 1.0, 1.5, 2.0\], got 0.75"),
        ("mobilenetv2_3d", {"width": 0.5}, r"width must be one of \[0.2, 0.45, 0.7, 1.0\], got 0.5"),
        ("resnext3d", {"depth": 34}, r"depth must be one of \[50, 101, 152\], got 34"),
        ("resnet3d", {"depth": 50}, r"resnet3d: depth must be one of \[10, 18, 34\], got 50"),
        ("resnet3d", {"width": 0}, r"resnet3d: width must be > 0, got 0"),
    ],
)
def test_bad_variant_is_refused(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_model(name, 10, **kwargs)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        build_model("r3d_18", 0)
    with pytest.raises(TypeError, match="width"):
        build_model("r3d_18", 10, width=1.0)


def test_list_models():
    assert list_models() == [
        "mc3_18", "mobilenetv2_3d", "mvit_v1_b", "r2plus1d_18", "r3d_18", "resnet3d", "resnext3d", "s3d",
        "shufflenetv2_3d", "swin3d_t",
    ]
