"""How a model runs at inference (torch-free, so that the job's configuration can check it before Ray starts):
:class:`InferenceSettings` and the choices :func:`raycondi.models.tuning.tune` takes (its docstring says what each
one measures)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["AUTO", "CHOICES", "InferenceSettings", "check_choice"]

AUTO = ("auto", "auto-compile")
CHOICES = (*AUTO, "fp32")  # or an explicit InferenceSettings.parse() text


@dataclass(frozen=True)
class InferenceSettings:
    """One way to run a model: ``dtype`` (``bf16`` is autocast, the weights stay fp32), ``layout`` of weights and
    input (``contiguous``: as loaded), ``compile`` (``off``, ``default``, or ``cuda_graphs``:
    ``torch.compile(mode="reduce-overhead")``)."""

    dtype: Literal["fp32", "bf16"] = "fp32"
    layout: Literal["contiguous", "channels_last_3d"] = "contiguous"
    compile: Literal["off", "default", "cuda_graphs"] = "off"

    @classmethod
    def parse(cls, text: str) -> InferenceSettings:
        """``DTYPE[+channels_last_3d][+compile|+cuda_graphs]``; ``ValueError`` naming the bad part."""
        dtype, *options = text.split("+")
        if dtype not in ("fp32", "bf16"):
            raise ValueError(f"inference setting {text!r}: expected fp32 or bf16 first, got {dtype!r}")
        layout, mode = "contiguous", "off"
        for option in options:
            if option == "channels_last_3d":
                layout = "channels_last_3d"
            elif option in ("compile", "cuda_graphs") and mode == "off":
                mode = "default" if option == "compile" else "cuda_graphs"
            else:
                raise ValueError(f"inference setting {text!r}: unexpected {option!r} (options: channels_last_3d, "
                                 "and one of compile, cuda_graphs)")
        return cls(dtype, layout, mode)

    def __str__(self) -> str:
        options = ["channels_last_3d"] * (self.layout == "channels_last_3d")
        options += {"off": [], "default": ["compile"], "cuda_graphs": ["cuda_graphs"]}[self.compile]
        return "+".join([self.dtype, *options])


def check_choice(text: str) -> str:
    """``text`` when it is one of :data:`CHOICES` or a valid explicit setting; ``ValueError`` otherwise."""
    if text not in CHOICES:
        InferenceSettings.parse(text)
    return text
