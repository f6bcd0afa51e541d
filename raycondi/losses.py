"""Training losses for confidence distillation (ConDi-SR) and the paper's baselines.

Every loss is a pure function of a mini-batch of logits and integer labels that returns a scalar
tensor (mean over the batch); nothing here keeps state or touches Ray. Shapes, with ``B`` clips and
``C`` classes:

* ``student_logits``, ``teacher_logits``, ``class_logits``: ``(B, C)`` floating point;
* ``confidence_logit``: ``(B,)`` floating point, the student's confidence head *before* the sigmoid
  (``z̃ = sigmoid(confidence_logit)``);
* ``labels``: ``(B,)`` integer class indices in ``[0, C)``.

Shapes, dtypes and label ranges are checked up front and a :class:`ValueError` names the offending
argument. The label range check reads two numbers back from the device (one synchronisation per call).

Losses (paper: "Confidence distillation for efficient action recognition", Sec. III-B and IV-A):

* :func:`condi_sr_loss` -- ConDi-SR, Eq. 1-7 with the positive weight ``mu`` of Sec. IV-A;
* :func:`kd_loss` -- Hinton et al.'s soft-label distillation, the ST-Ent baseline's student;
* :func:`bce_conf_loss` -- the naive BCE-Conf baseline (cross-entropy + BCE of ``z̃`` on ``z``);
* :func:`devries_confidence_loss` -- DeVries & Taylor (2018) learned confidence with hints, the
  ST-Conf baseline, with :func:`confidence_penalty` and :func:`devries_next_lambda` for its budget.

:func:`teacher_correct` (Eq. 1) is the pseudo ground truth ``z`` shared with training statistics and
evaluation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "teacher_correct",
    "condi_sr_loss",
    "kd_loss",
    "bce_conf_loss",
    "devries_confidence_loss",
    "confidence_penalty",
    "devries_next_lambda",
]


# --------------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------------
def _check_logits(name: str, logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or not logits.is_floating_point():
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{name}: expected a floating point tensor of shape (B, C), got {shape}")
    if logits.shape[0] < 1 or logits.shape[1] < 1:
        raise ValueError(f"{name}: expected at least one sample and one class, got shape {tuple(logits.shape)}")


def _check_batch(name: str, tensor: torch.Tensor, batch: int, *, floating: bool) -> None:
    if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != (batch,):
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f"{name}: expected a tensor of shape ({batch},) (one value per clip), got {shape}")
    if floating and not tensor.is_floating_point():
        raise ValueError(f"{name}: expected a floating point tensor, got dtype {tensor.dtype}")
    if not floating and (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool):
        raise ValueError(f"{name}: expected an integer tensor of class indices, got dtype {tensor.dtype}")


def _check_labels(labels: torch.Tensor, batch: int, classes: int) -> None:
    _check_batch("labels", labels, batch, floating=False)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        raise ValueError(f"labels: class indices must lie in [0, {classes}), got values in [{low}, {high}]")


def _check_pair(name: str, logits: torch.Tensor, reference_name: str, reference: torch.Tensor) -> None:
    _check_logits(name, logits)
    if logits.shape != reference.shape:
        raise ValueError(
            f"{name}: shape {tuple(logits.shape)} does not match {reference_name} shape {tuple(reference.shape)}"
        )


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}: must be > 0, got {value}")


def _check_non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name}: must be >= 0, got {value}")


# --------------------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------------------
def _softened_log_probs(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """log p̃ with p̃_k = exp(s_k / τ) / Σ_j exp(s_j / τ) (paper Eq. 3-4), row-wise, in log space."""
    return F.log_softmax(logits / tau, dim=1)


def _kl_batchmean(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) = Σ_k p_k (log p_k − log q_k), summed over classes and averaged over the batch.

    Both arguments are log-probabilities, so a probability that underflows to 0 contributes exactly 0
    and never produces ``0 · log 0`` NaNs in the forward or backward pass.
    """
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def _weighted_bce_with_logits(logit: torch.Tensor, target: torch.Tensor, mu: float) -> torch.Tensor:
    """Mean over the batch of −[μ·z·log σ(l) + (1 − z)·log(1 − σ(l))], from the logit ``l``.

    ``log σ(l)`` and ``log(1 − σ(l)) = log σ(−l)`` are computed with ``logsigmoid``, which is exact for
    large |l| (no ``log(0)``). ``μ`` multiplies only the positive (z = 1) part, so samples with z = 0
    do not depend on μ and samples with z = 1 scale exactly by μ. Equal to
    ``F.binary_cross_entropy_with_logits(l, z, pos_weight=μ)``.
    """
    target = target.to(logit.dtype)
    return -(mu * target * F.logsigmoid(logit) + (1 - target) * F.logsigmoid(-logit)).mean()


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------
def teacher_correct(teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Pseudo ground truth z of paper Eq. 1: ``z_i = [argmax_c p_c = y_i]``, as a bool ``(B,)`` tensor.

    The softmax is monotonic, so the argmax is taken over the logits directly. When several classes
    share the maximum, ``torch.argmax`` returns the first of them (the lowest class index), so a tie
    counts as correct only if the label is that lowest index. Not differentiable (z is a label).
    """
    _check_logits("teacher_logits", teacher_logits)
    _check_labels(labels, teacher_logits.shape[0], teacher_logits.shape[1])
    return teacher_logits.argmax(dim=1) == labels


def condi_sr_loss(
    student_logits: torch.Tensor,
    confidence_logit: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    tau: float = 0.9,
    lam: float = 1.5,
    mu: float = 1.5,
    mix_gradient: bool = True,
) -> torch.Tensor:
    """ConDi-SR loss, paper Eq. 6: ``L = L_KD(p̂ᵗ, p̃ˢ) + λ · L_conf``.

    Step by step, per clip i of the batch:

    1. ``z = [argmax teacher_logits = label]`` (Eq. 1, :func:`teacher_correct`).
    2. ``p̃ᵗ = softmax(teacher_logits / τ)``, ``p̃ˢ = softmax(student_logits / τ)`` (Eq. 3-4); the
       same τ softens both.
    3. ``z̃ = sigmoid(confidence_logit)`` and (Eq. 5)
       ``p̂ᵗ = z̃ p̃ᵗ + (1 − z̃) U`` if z = 1, else ``p̂ᵗ = (1 − z̃) p̃ᵗ + z̃ U``.
       **Reading of U([0,1]^C):** the uniform categorical distribution, ``U_k = 1/C`` for every
       class, so that p̂ᵗ stays a probability distribution (a vector of uniform random draws would not
       sum to 1 and would make the loss noisy). The mixture is computed in log space,
       ``log p̂ᵗ = logaddexp(log w + log p̃ᵗ, log(1 − w) − log C)`` with ``w = z̃`` (z = 1) or
       ``w = 1 − z̃`` (z = 0), which is finite even for a saturated ``z̃``.
       **Gradients flow into z̃ through Eq. 5** (p̂ᵗ is not detached): this is what lets the
       distillation term teach the confidence head. ``teacher_logits`` are not detached here: pass
       constants (stored logits, or logits computed under ``torch.no_grad()``).
    4. ``L_KD = τ² · KL(p̂ᵗ ‖ p̃ˢ) = τ² Σ_k p̂ᵗ_k log(p̂ᵗ_k / p̃ˢ_k)`` (Eq. 7-8). **Reading of Eq. 7's
       1/n:** n is the number of samples in the batch; the KL divergence is summed over the C classes
       and averaged over the batch (PyTorch's ``KLDivLoss(reduction="batchmean")``), the usual
       distillation loss the paper builds on.
    5. ``L_conf = −mean_i[μ z log z̃ + (1 − z) log(1 − z̃)]``, the binary cross-entropy of z̃ against z
       with the weight μ on the positive (z = 1) part (Sec. IV-A), computed from the logit with
       ``logsigmoid`` (stable for any logit).

    Defaults are the paper's: τ = 0.9, μ = 1.5, and λ = 1.5 from its grid {0.5, 1.5, 2.0}.
    ``mix_gradient=False`` is a documented variant, not the paper's loss: Eq. 5's weight is detached, so z̃
    learns from ``L_conf`` alone while the KD target is still mixed by it. Through Eq. 5, KD pulls z̃ towards
    "the student agrees with the teacher", which on clips the student gets wrong opposes ``L_conf``'s "the
    teacher is right" (``benchmarks/README.md`` measures how often). Returns a scalar tensor.
    """
    _check_logits("student_logits", student_logits)
    batch, classes = student_logits.shape
    _check_batch("confidence_logit", confidence_logit, batch, floating=True)
    _check_pair("teacher_logits", teacher_logits, "student_logits", student_logits)
    _check_positive("tau", tau)
    _check_non_negative("lam", lam)
    _check_non_negative("mu", mu)
    z = teacher_correct(teacher_logits, labels)

    # Eq. 5 in log space: weight w on p̃ᵗ and 1 − w on U = 1/C, where w = z̃ = σ(l) if z = 1 and
    # w = 1 − z̃ = σ(−l) otherwise; log σ(±l) is exact for any l.
    mixing = confidence_logit if mix_gradient else confidence_logit.detach()
    signed_logit = torch.where(z, mixing, -mixing).unsqueeze(1)
    log_p_hat = torch.logaddexp(
        F.logsigmoid(signed_logit) + _softened_log_probs(teacher_logits, tau),
        F.logsigmoid(-signed_logit) - math.log(classes),
    )

    kd = tau**2 * _kl_batchmean(log_p_hat, _softened_log_probs(student_logits, tau))
    return kd + lam * _weighted_bce_with_logits(confidence_logit, z, mu)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    tau: float = 0.9,
    ce_weight: float = 0.0,
) -> torch.Tensor:
    """Soft-label knowledge distillation (Hinton et al., 2015), the student of the ST-Ent baseline.

    ``L = τ² · KL(p̃ᵗ ‖ p̃ˢ) + ce_weight · CE(student_logits, labels)``, with p̃ softened by τ as in
    Eq. 4, the KL summed over classes and averaged over the batch (as in :func:`condi_sr_loss`), and
    the cross-entropy taken at temperature 1. The τ² factor keeps the soft term's gradient scale
    independent of τ (Hinton et al.). Hinton et al.'s weighted average ``(1 − a)·soft + a·hard`` is
    this loss with ``ce_weight = a / (1 − a)`` times the constant ``1 − a``. Defaults: τ = 0.9 (the
    paper's distillation temperature, so ST-Ent and ConDi-SR students see the same targets) and
    ``ce_weight = 0`` (pure distillation; ``labels`` are then only checked).
    """
    _check_logits("student_logits", student_logits)
    _check_pair("teacher_logits", teacher_logits, "student_logits", student_logits)
    _check_labels(labels, *student_logits.shape)
    _check_positive("tau", tau)
    _check_non_negative("ce_weight", ce_weight)
    soft = tau**2 * _kl_batchmean(
        _softened_log_probs(teacher_logits, tau), _softened_log_probs(student_logits, tau)
    )
    if ce_weight == 0:
        return soft
    return soft + ce_weight * F.cross_entropy(student_logits, labels)


def bce_conf_loss(
    student_logits: torch.Tensor,
    confidence_logit: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    lam: float = 1.5,
    mu: float = 1.5,
) -> torch.Tensor:
    """Naive BCE-Conf baseline (paper Sec. III-B, Table III): no distillation.

    ``L = CE(student_logits, labels) + λ · L_conf`` where the class head learns from the one-hot
    labels (cross-entropy at temperature 1, mean over the batch) and ``L_conf`` is the same
    μ-weighted binary cross-entropy of ``z̃ = sigmoid(confidence_logit)`` against the teacher-correct
    label z (Eq. 1) as in :func:`condi_sr_loss`. The teacher logits are used only to compute z. Same
    defaults as ConDi-SR (λ = μ = 1.5) so the two differ only in the class term.
    """
    _check_logits("student_logits", student_logits)
    _check_batch("confidence_logit", confidence_logit, student_logits.shape[0], floating=True)
    _check_pair("teacher_logits", teacher_logits, "student_logits", student_logits)
    _check_non_negative("lam", lam)
    _check_non_negative("mu", mu)
    z = teacher_correct(teacher_logits, labels)
    return F.cross_entropy(student_logits, labels) + lam * _weighted_bce_with_logits(confidence_logit, z, mu)


def confidence_penalty(confidence_logit: torch.Tensor) -> torch.Tensor:
    """DeVries & Taylor's confidence penalty ``mean_i(−log c_i)``, ``c = sigmoid(confidence_logit)``.

    Computed as ``−mean(logsigmoid(l))`` (no clamping needed). This is the quantity compared with the
    hint budget β by :func:`devries_next_lambda`; :func:`devries_confidence_loss` adds λ times it.
    """
    if not isinstance(confidence_logit, torch.Tensor) or confidence_logit.ndim != 1 or len(confidence_logit) < 1:
        shape = tuple(confidence_logit.shape) if isinstance(confidence_logit, torch.Tensor) else None
        raise ValueError(f"confidence_logit: expected a non-empty floating point tensor of shape (B,), got {shape}")
    _check_batch("confidence_logit", confidence_logit, len(confidence_logit), floating=True)
    return -F.logsigmoid(confidence_logit).mean()


def devries_confidence_loss(
    class_logits: torch.Tensor,
    confidence_logit: torch.Tensor,
    labels: torch.Tensor,
    *,
    lam: float = 0.1,
    hint_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Learned confidence with hints (DeVries & Taylor, 2018), the student of the ST-Conf baseline.

    With ``p = softmax(class_logits)``, ``c = sigmoid(confidence_logit)`` and the one-hot label y:
    on "hinted" samples the prediction is interpolated towards the label,
    ``p' = c·p + (1 − c)·onehot(y)``; other samples keep ``p' = p`` (the reference code's
    ``conf = c·b + (1 − b)``). The loss is ``NLL(p', y) + λ · mean(−log c)`` (the penalty over *all*
    samples, as in the reference code), averaged over the batch.

    Which samples are hinted: ``hint_mask`` (a bool ``(B,)`` tensor, True = hinted) when given;
    otherwise each sample independently with probability 0.5, drawn with ``torch.bernoulli`` from
    ``generator`` (a seeded ``torch.Generator`` on the logits' device makes it reproducible; None
    uses the global RNG). Passing both is an error. Gradients reach both heads through p' and the
    penalty; the mask itself is a constant.

    ``log p'_y = logaddexp(log c + log p_y, log(1 − c))`` is computed in log space (the reference code
    clamps p and c to [1e-12, 1 − 1e-12] instead; this form needs no clamp).

    λ is adapted during training against the hint budget β: after each step call
    :func:`devries_next_lambda` with :func:`confidence_penalty` of the batch. The default λ = 0.1 is
    the reference code's initial value.
    """
    _check_logits("class_logits", class_logits)
    batch = class_logits.shape[0]
    _check_batch("confidence_logit", confidence_logit, batch, floating=True)
    _check_labels(labels, *class_logits.shape)
    _check_non_negative("lam", lam)
    if hint_mask is not None and generator is not None:
        raise ValueError("hint_mask: give either hint_mask or generator, not both")
    if hint_mask is None:
        probs = torch.full((batch,), 0.5, device=class_logits.device)
        hint_mask = torch.bernoulli(probs, generator=generator).bool()
    elif not isinstance(hint_mask, torch.Tensor) or tuple(hint_mask.shape) != (batch,) or hint_mask.dtype != torch.bool:
        shape = tuple(hint_mask.shape) if isinstance(hint_mask, torch.Tensor) else type(hint_mask).__name__
        raise ValueError(f"hint_mask: expected a bool tensor of shape ({batch},), got {shape}")

    log_p_y = F.log_softmax(class_logits, dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
    hinted = torch.logaddexp(F.logsigmoid(confidence_logit) + log_p_y, F.logsigmoid(-confidence_logit))
    nll = -torch.where(hint_mask, hinted, log_p_y).mean()
    return nll + lam * confidence_penalty(confidence_logit)


def devries_next_lambda(lam: float, penalty: float, budget: float = 0.3) -> float:
    """The next λ of DeVries & Taylor's hint budget, exactly as their reference code updates it.

    ``λ / 1.01`` (smaller: hints get cheaper) if ``budget > penalty``, else ``λ / 0.99`` (larger: hints
    get dearer), where ``penalty`` is the batch's :func:`confidence_penalty` and ``budget`` is β
    (reference default 0.3). Note the factors are divisions, as in the reference code, so the increase
    is ×1/0.99 ≈ ×1.0101 rather than ×1.01.
    """
    _check_positive("lam", lam)
    return lam / 1.01 if budget > float(penalty) else lam / 0.99
