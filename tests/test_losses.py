"""Tests for raycondi.losses against an independent float64 implementation and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from raycondi.losses import (
    bce_conf_loss,
    condi_sr_loss,
    confidence_penalty,
    devries_confidence_loss,
    devries_next_lambda,
    kd_loss,
    teacher_correct,
)


# --------------------------------------------------------------------------------------------------
# independent reference: plain Python floats, loops, math.exp/log, written from the paper's equations
# --------------------------------------------------------------------------------------------------
def _softmax(row: list[float], tau: float = 1.0) -> list[float]:
    top = max(row)
    e = [math.exp((v - top) / tau) for v in row]
    return [x / sum(e) for x in e]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _argmax(row: list[float]) -> int:
    best = 0
    for i, v in enumerate(row):
        if v > row[best]:
            best = i
    return best


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pk * math.log(pk / qk) for pk, qk in zip(p, q) if pk > 0)


def _ref_condi_sr(student, conf, teacher, labels, tau, lam, mu) -> float:
    kd = bce = 0.0
    for s_row, l, t_row, y in zip(student, conf, teacher, labels):
        c = len(t_row)
        z = 1 if _argmax(t_row) == y else 0
        zt = _sigmoid(l)
        pt, ps = _softmax(t_row, tau), _softmax(s_row, tau)
        if z == 1:
            p_hat = [zt * p + (1 - zt) / c for p in pt]
        else:
            p_hat = [(1 - zt) * p + zt / c for p in pt]
        kd += tau**2 * _kl(p_hat, ps)
        bce += -(mu * z * math.log(zt) + (1 - z) * math.log(1 - zt))
    n = len(labels)
    return kd / n + lam * bce / n


def _ref_kd(student, teacher, labels, tau, ce_weight) -> float:
    total = 0.0
    for s_row, t_row, y in zip(student, teacher, labels):
        total += tau**2 * _kl(_softmax(t_row, tau), _softmax(s_row, tau))
        total += ce_weight * -math.log(_softmax(s_row)[y])
    return total / len(labels)


def _ref_bce_conf(student, conf, teacher, labels, lam, mu) -> float:
    total = 0.0
    for s_row, l, t_row, y in zip(student, conf, teacher, labels):
        z = 1 if _argmax(t_row) == y else 0
        zt = _sigmoid(l)
        total += -math.log(_softmax(s_row)[y])
        total += lam * -(mu * z * math.log(zt) + (1 - z) * math.log(1 - zt))
    return total / len(labels)


def _ref_devries(logits, conf, labels, mask, lam) -> float:
    nll = penalty = 0.0
    for row, l, y, hinted in zip(logits, conf, labels, mask):
        p = _softmax(row)
        c = _sigmoid(l) if hinted else 1.0
        p_new = [c * pk + (1 - c) * (1.0 if k == y else 0.0) for k, pk in enumerate(p)]
        nll += -math.log(p_new[y])
        penalty += -math.log(_sigmoid(l))
    n = len(labels)
    return nll / n + lam * penalty / n


# Small hand-made batch: 4 clips, 3 classes. Teacher argmax per row: 0, 1, 2, 0.
# Labels 0, 1, 0, 2  ->  z = 1, 1, 0, 0 (two correct, two wrong).
STUDENT = [[1.0, -0.5, 0.2], [0.3, 0.8, -1.2], [-0.7, 0.1, 0.4], [2.0, 0.0, -1.0]]
TEACHER = [[2.5, 0.1, -0.3], [0.2, 1.7, 0.4], [-1.0, 0.3, 1.1], [0.9, 0.8, -2.0]]
CONF = [1.2, -0.4, 0.6, -2.1]
LABELS = [0, 1, 0, 2]


def _batch(dtype=torch.float64):
    return (
        torch.tensor(STUDENT, dtype=dtype),
        torch.tensor(CONF, dtype=dtype),
        torch.tensor(TEACHER, dtype=dtype),
        torch.tensor(LABELS),
    )


# --------------------------------------------------------------------------------------------------
# teacher_correct (Eq. 1)
# --------------------------------------------------------------------------------------------------
def test_teacher_correct_matches_argmax_and_breaks_ties_to_the_lowest_class():
    _, _, teacher, labels = _batch()
    assert teacher_correct(teacher, labels).tolist() == [True, True, False, False]
    tied = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    assert teacher_correct(tied, torch.tensor([0, 1])).tolist() == [True, False]
    assert teacher_correct(teacher, labels).dtype == torch.bool


# --------------------------------------------------------------------------------------------------
# condi_sr_loss
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau,lam,mu", [(0.9, 1.5, 1.5), (1.0, 0.0, 1.0), (2.0, 0.5, 3.0), (0.5, 2.0, 0.0)])
def test_condi_sr_matches_float64_reference(tau, lam, mu):
    loss = condi_sr_loss(*_batch(), tau=tau, lam=lam, mu=mu)
    expected = _ref_condi_sr(STUDENT, CONF, TEACHER, LABELS, tau, lam, mu)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_condi_sr_float32_matches_reference():
    loss = condi_sr_loss(*_batch(torch.float32))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(_ref_condi_sr(STUDENT, CONF, TEACHER, LABELS, 0.9, 1.5, 1.5), rel=1e-5)


def test_condi_sr_hand_computed_value():
    # tau = 1, lam = 0.5, mu = 2. Both teacher rows [ln 3, 0] -> p~t = [3/4, 1/4]; both student rows [0, 0]
    # -> p~s = [1/2, 1/2]; U = [1/2, 1/2].
    # Clip 0: label 0 -> z = 1; confidence logit 0 -> z~ = 1/2.
    #   p^t = 1/2 [3/4, 1/4] + 1/2 [1/2, 1/2] = [0.625, 0.375]
    #   KL = 0.625 ln(0.625/0.5) + 0.375 ln(0.375/0.5) = 0.625 ln 1.25 + 0.375 ln 0.75
    #      = 0.625 * 0.2231436 - 0.375 * 0.2876821 = 0.1394647 - 0.1078808 = 0.0315839
    #   BCE = -mu ln z~ = -2 ln 0.5 = 1.3862944
    # Clip 1: label 1 -> z = 0; confidence logit ln 3 -> z~ = 3/4.
    #   p^t = (1 - 3/4) [3/4, 1/4] + 3/4 [1/2, 1/2] = [0.1875 + 0.375, 0.0625 + 0.375] = [0.5625, 0.4375]
    #   KL = 0.5625 ln 1.125 + 0.4375 ln 0.875 = 0.5625 * 0.1177830 - 0.4375 * 0.1335314
    #      = 0.0662529 - 0.0584200 = 0.0078330
    #   BCE = -ln(1 - z~) = -ln 0.25 = 1.3862944
    # Loss = mean KL * tau^2 + lam * mean BCE = (0.0315839 + 0.0078330) / 2 + 0.5 * 1.3862944
    #      = 0.0197085 + 0.6931472 = 0.7128556
    ln3 = math.log(3.0)
    loss = condi_sr_loss(
        torch.zeros(2, 2, dtype=torch.float64),
        torch.tensor([0.0, ln3], dtype=torch.float64),
        torch.tensor([[ln3, 0.0], [ln3, 0.0]], dtype=torch.float64),
        torch.tensor([0, 1]),
        tau=1.0,
        lam=0.5,
        mu=2.0,
    )
    assert loss.item() == pytest.approx(0.7128556, abs=1e-7)


def test_condi_sr_with_z1_and_saturated_confidence_is_plain_kd():
    # Teacher right on every clip (z = 1) and z~ -> 1: p^t -> p~t, so with lam = 0 the loss is tau^2 KL(p~t || p~s).
    student, _, teacher, _ = _batch()
    labels = teacher.argmax(dim=1)
    saturated = torch.full((4,), 30.0, dtype=torch.float64)
    for tau in (0.9, 2.0):
        condi = condi_sr_loss(student, saturated, teacher, labels, tau=tau, lam=0.0)
        plain = kd_loss(student, teacher, labels, tau=tau)
        assert condi.item() == pytest.approx(plain.item(), rel=1e-10)
        assert condi.item() > 1e-3  # not trivially both zero


def test_condi_sr_gradient_reaches_confidence_through_the_kd_term_alone():
    student, conf, teacher, labels = _batch()
    conf.requires_grad_(True)
    student.requires_grad_(True)
    condi_sr_loss(student, conf, teacher, labels, lam=0.0).backward()
    assert conf.grad is not None
    assert torch.all(conf.grad != 0)
    assert torch.any(student.grad != 0)


def test_detached_mixing_keeps_the_value_and_leaves_z_to_the_bce_term():
    """mix_gradient=False: the same loss value; z~'s gradient is exactly the weighted BCE's, the student's
    exactly the paper loss's."""
    student, conf, teacher, labels = _batch()
    grads = {}
    for mix in (True, False):
        s, c = student.clone().requires_grad_(True), conf.clone().requires_grad_(True)
        loss = condi_sr_loss(s, c, teacher, labels, lam=1.5, mu=1.5, mix_gradient=mix)
        loss.backward()
        grads[mix] = (loss.item(), s.grad, c.grad)
    assert grads[True][0] == grads[False][0]
    assert torch.equal(grads[True][1], grads[False][1])
    c = conf.clone().requires_grad_(True)
    z = teacher_correct(teacher, labels).double()
    (1.5 * -(1.5 * z * F.logsigmoid(c) + (1 - z) * F.logsigmoid(-c)).mean()).backward()
    torch.testing.assert_close(grads[False][2], c.grad, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(grads[True][2], c.grad)  # the paper's: Eq. 5 adds its own pull


def test_condi_sr_gradients_match_finite_differences():
    student, conf, teacher, labels = _batch()
    student.requires_grad_(True)
    conf.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s, c: condi_sr_loss(s, c, teacher, labels, tau=0.9, lam=1.5, mu=1.5), (student, conf)
    )


def test_condi_sr_is_finite_for_extreme_logits():
    student, _, teacher, labels = _batch(torch.float32)
    for value in (-200.0, 200.0):
        conf = torch.full((4,), value, requires_grad=True)
        loss = condi_sr_loss(student * 100, conf, teacher * 100, labels)
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.all(torch.isfinite(conf.grad))


def test_mu_changes_only_the_positive_part_of_the_bce():
    student, conf, teacher, labels = _batch()
    z = teacher_correct(teacher, labels)
    negatives = ~z

    # z = 0 clips only: the loss does not depend on mu.
    args_neg = (student[negatives], conf[negatives], teacher[negatives], labels[negatives])
    assert condi_sr_loss(*args_neg, mu=1.0).item() == condi_sr_loss(*args_neg, mu=7.0).item()

    # z = 1 clips only: the BCE term scales exactly by mu.
    args_pos = (student[z], conf[z], teacher[z], labels[z])
    kd_pos = condi_sr_loss(*args_pos, lam=0.0)
    bce_mu1 = condi_sr_loss(*args_pos, lam=1.0, mu=1.0) - kd_pos
    bce_mu3 = condi_sr_loss(*args_pos, lam=1.0, mu=3.0) - kd_pos
    assert bce_mu3.item() == pytest.approx(3.0 * bce_mu1.item(), rel=1e-12)
    assert bce_mu1.item() == pytest.approx(-F.logsigmoid(conf[z]).mean().item(), rel=1e-12)

    # Mixed batch: changing mu by d adds lam * d * sum_{z=1}(-log z~) / B.
    change = condi_sr_loss(student, conf, teacher, labels, lam=2.0, mu=2.5) - condi_sr_loss(
        student, conf, teacher, labels, lam=2.0, mu=1.0
    )
    expected = 2.0 * 1.5 * -F.logsigmoid(conf[z]).sum().item() / 4
    assert change.item() == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# kd_loss, bce_conf_loss
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau,ce_weight", [(0.9, 0.0), (4.0, 0.0), (2.0, 0.7)])
def test_kd_loss_matches_reference(tau, ce_weight):
    student, _, teacher, labels = _batch()
    loss = kd_loss(student, teacher, labels, tau=tau, ce_weight=ce_weight)
    assert loss.item() == pytest.approx(_ref_kd(STUDENT, TEACHER, LABELS, tau, ce_weight), rel=1e-12)


def test_kd_loss_is_zero_when_student_equals_teacher():
    _, _, teacher, labels = _batch()
    assert kd_loss(teacher, teacher, labels).item() == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("lam,mu", [(1.5, 1.5), (0.0, 1.0), (2.0, 4.0)])
def test_bce_conf_loss_matches_reference(lam, mu):
    loss = bce_conf_loss(*_batch(), lam=lam, mu=mu)
    assert loss.item() == pytest.approx(_ref_bce_conf(STUDENT, CONF, TEACHER, LABELS, lam, mu), rel=1e-12)


def test_bce_conf_loss_hand_computed_value():
    # One clip, 2 classes, student logits [0, 0] -> CE = ln 2 = 0.6931472; teacher [1, 0], label 0 -> z = 1;
    # confidence logit 0 -> z~ = 1/2, BCE = -mu ln 1/2 = 2 * 0.6931472. lam = 0.5:
    # loss = 0.6931472 + 0.5 * 1.3862944 = 1.3862944
    teacher = torch.tensor([[1.0, 0.0]])
    loss = bce_conf_loss(torch.zeros(1, 2), torch.zeros(1), teacher, torch.tensor([0]), lam=0.5, mu=2.0)
    assert loss.item() == pytest.approx(1.3862944, abs=1e-6)


# --------------------------------------------------------------------------------------------------
# DeVries & Taylor
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [[True, False, True, False], [True] * 4, [False] * 4])
def test_devries_loss_matches_reference(mask):
    student, conf, _, labels = _batch()
    loss = devries_confidence_loss(student, conf, labels, lam=0.3, hint_mask=torch.tensor(mask))
    assert loss.item() == pytest.approx(_ref_devries(STUDENT, CONF, LABELS, mask, 0.3), rel=1e-12)


def test_devries_loss_hand_computed_value():
    # One hinted clip, 2 classes, logits [0, 0] -> p = [1/2, 1/2], label 0; confidence logit ln 3 -> c = 3/4.
    # p'_0 = c p_0 + (1 - c) = 0.375 + 0.25 = 0.625; NLL = -ln 0.625 = 0.4700036.
    # Penalty = -ln 0.75 = 0.2876821; lam = 0.1 -> loss = 0.4700036 + 0.0287682 = 0.4987718
    loss = devries_confidence_loss(
        torch.zeros(1, 2), torch.tensor([math.log(3.0)]), torch.tensor([0]), hint_mask=torch.tensor([True])
    )
    assert loss.item() == pytest.approx(0.4987718, abs=1e-6)


def test_devries_loss_without_hints_is_cross_entropy_plus_penalty():
    student, conf, _, labels = _batch()
    loss = devries_confidence_loss(student, conf, labels, lam=0.2, hint_mask=torch.zeros(4, dtype=torch.bool))
    expected = F.cross_entropy(student, labels) + 0.2 * confidence_penalty(conf)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)


def test_devries_hints_drawn_from_a_seeded_generator_are_reproducible():
    student, conf, _, labels = _batch()
    student = student.repeat(8, 1)
    conf, labels = conf.repeat(8), labels.repeat(8)
    first = devries_confidence_loss(student, conf, labels, generator=torch.Generator().manual_seed(3))
    again = devries_confidence_loss(student, conf, labels, generator=torch.Generator().manual_seed(3))
    assert first.item() == again.item()
    mask = torch.bernoulli(torch.full((32,), 0.5), generator=torch.Generator().manual_seed(3)).bool()
    assert 0 < int(mask.sum()) < 32
    explicit = devries_confidence_loss(student, conf, labels, hint_mask=mask)
    assert first.item() == explicit.item()


def test_devries_gradient_reaches_confidence_through_the_hints():
    student, conf, _, labels = _batch()
    conf.requires_grad_(True)
    devries_confidence_loss(student, conf, labels, lam=0.0, hint_mask=torch.ones(4, dtype=torch.bool)).backward()
    assert torch.all(conf.grad != 0)


def test_confidence_penalty_value():
    # -mean(ln sigmoid([0, ln 3])) = (ln 2 + ln(4/3)) / 2 = (0.6931472 + 0.2876821) / 2 = 0.4904146
    assert confidence_penalty(torch.tensor([0.0, math.log(3.0)])).item() == pytest.approx(0.4904146, abs=1e-6)


def test_devries_next_lambda_follows_the_reference_code():
    assert devries_next_lambda(0.1, penalty=0.2, budget=0.3) == pytest.approx(0.1 / 1.01)  # under budget: cheaper
    assert devries_next_lambda(0.1, penalty=0.4, budget=0.3) == pytest.approx(0.1 / 0.99)  # over budget: dearer
    assert devries_next_lambda(0.1, penalty=0.3, budget=0.3) == pytest.approx(0.1 / 0.99)  # equal: dearer
    assert devries_next_lambda(0.1, penalty=torch.tensor(0.2)) == pytest.approx(0.1 / 1.01)


# --------------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------------
def _condi(**overrides):
    tensors = dict(zip(("student_logits", "confidence_logit", "teacher_logits", "labels"), _batch()))
    hyper = {}
    for key, value in overrides.items():
        (tensors if key in tensors else hyper)[key] = value
    return condi_sr_loss(*tensors.values(), **hyper)


@pytest.mark.parametrize(
    "overrides,name",
    [
        ({"student_logits": torch.zeros(4)}, "student_logits"),
        ({"student_logits": torch.zeros(4, 3, dtype=torch.long)}, "student_logits"),
        ({"confidence_logit": torch.zeros(4, 1)}, "confidence_logit"),
        ({"confidence_logit": torch.zeros(3)}, "confidence_logit"),
        ({"teacher_logits": torch.zeros(4, 2)}, "teacher_logits"),
        ({"labels": torch.zeros(5, dtype=torch.long)}, "labels"),
        ({"labels": torch.zeros(4)}, "labels"),
        ({"labels": torch.tensor([0, 1, 3, 0])}, "labels"),
        ({"labels": torch.tensor([0, -1, 0, 0])}, "labels"),
        ({"tau": 0.0}, "tau"),
        ({"lam": -1.0}, "lam"),
        ({"mu": -0.5}, "mu"),
    ],
)
def test_condi_sr_bad_arguments_raise_naming_the_argument(overrides, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        _condi(**overrides)


def test_other_losses_check_their_arguments():
    student, conf, teacher, labels = _batch()
    with pytest.raises(ValueError, match="^teacher_logits:"):
        kd_loss(student, teacher[:, :2], labels)
    with pytest.raises(ValueError, match="^confidence_logit:"):
        bce_conf_loss(student, conf[:2], teacher, labels)
    with pytest.raises(ValueError, match="^class_logits:"):
        devries_confidence_loss(student[0], conf, labels)
    with pytest.raises(ValueError, match="^hint_mask:"):
        devries_confidence_loss(student, conf, labels, hint_mask=torch.ones(4))
    with pytest.raises(ValueError, match="^hint_mask:"):
        devries_confidence_loss(
            student, conf, labels, hint_mask=torch.ones(4, dtype=torch.bool), generator=torch.Generator()
        )
    with pytest.raises(ValueError, match="^confidence_logit:"):
        confidence_penalty(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="^lam:"):
        devries_next_lambda(0.0, penalty=0.1)
