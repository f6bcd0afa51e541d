"""The two-headed student of confidence distillation: one backbone, a class head and a confidence head.

The student f maps a clip to class logits (the paper's student classifier) and to one confidence logit
whose sigmoid is z̃, the predicted probability that the teacher classifies the clip correctly (paper
Sec. III, Fig. 2). Both heads are linear layers on the backbone's pooled features, so the confidence
costs one dot product on top of the class prediction.
"""

from __future__ import annotations

from torch import Tensor, nn

from raycondi.models.registry import build_feature_extractor

__all__ = ["TwoHeadedStudent", "build_student"]


class TwoHeadedStudent(nn.Module):
    """``forward(clips) -> (class_logits (B, C), confidence_logit (B,))``.

    Args:
        backbone: maps (B, 3, T, H, W) clips to (B, ``feature_dim``) features.
        feature_dim: width of the backbone's features.
        num_classes: number of class logits C.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.class_head = nn.Linear(feature_dim, num_classes)
        self.confidence_head = nn.Linear(feature_dim, 1)
        for head in (self.class_head, self.confidence_head):
            nn.init.normal_(head.weight, 0, 0.01)
            nn.init.zeros_(head.bias)  # z̃ starts at 0.5

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.backbone(x)
        return self.class_head(features), self.confidence_head(features).squeeze(1)


def build_student(name: str, num_classes: int, **kwargs) -> TwoHeadedStudent:
    """The network ``name`` from ``raycondi.models.list_models()`` (``kwargs`` as for ``build_model``)
    with its classifier replaced by a class head of ``num_classes`` logits and a confidence head."""
    if num_classes < 1:
        raise ValueError(f"{name}: num_classes must be >= 1, got {num_classes}")
    backbone, feature_dim = build_feature_extractor(name, **kwargs)
    return TwoHeadedStudent(backbone, feature_dim, num_classes)
