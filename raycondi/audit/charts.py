"""The report's pictures as PNG bytes: the per-class counts, the score histogram, the teacher's share of the clips
against dense, a video's confidence over its clips, and frame strips. Each takes the numbers, not rows."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

from raycondi.plotting import plt, png

__all__ = ["CLASSES_SHOWN", "classes_png", "confidence_png", "image_png", "scores_png", "teacher_share_png"]

CLASSES_SHOWN = 30  # a Kinetics-sized label set (400 classes) in one readable bar chart: the most frequent
_BY = {"student": ("tab:orange", "labelled by the student"), "teacher": ("tab:red", "sent to the teacher")}


def image_png(pixels: np.ndarray) -> bytes:
    """An RGB uint8 array as a PNG, pixel for pixel."""
    out = io.BytesIO()
    plt.imsave(out, pixels, format="png")
    return out.getvalue()


def classes_png(labels: Counter) -> bytes:
    """Ok rows per predicted class, most frequent first (the first :data:`CLASSES_SHOWN` classes)."""
    shown = sorted(labels.items(), key=lambda item: (-item[1], item[0]))[:CLASSES_SHOWN]
    figure, axes = plt.subplots(figsize=(5.4, 0.6 + 0.25 * max(len(shown), 10)))
    names = [name.replace("$", r"\$") for name, _ in shown]  # a "$" would start matplotlib's math text
    axes.barh(names[::-1], [count for _, count in shown][::-1], color="tab:blue")
    hidden = f" ({len(shown)} most frequent of {len(labels)})" if len(labels) > len(shown) else ""
    axes.set(xlabel="videos", title=f"Videos per predicted class{hidden}")
    if not shown:
        axes.text(0.5, 0.5, "no ok rows", ha="center", va="center", transform=axes.transAxes)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(axis="x", alpha=0.3)
    return png(figure, 100)


def scores_png(counts: np.ndarray, edges: np.ndarray) -> bytes:
    """The histogram of the ok rows' ``score`` from its bin counts."""
    figure, axes = plt.subplots(figsize=(5.4, 3.2))
    axes.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="tab:green", edgecolor="white")
    axes.set(xlabel="score (video probability of the predicted class)", ylabel="videos", xlim=(0, 1),
             title="Score distribution")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(axis="y", alpha=0.3)
    return png(figure, 100)


def teacher_share_png(teacher_clips: int, dense_clips: int) -> bytes:
    """Clips the teacher ran on against the clips dense would have sent it (every clip of every ok video)."""
    figure, axes = plt.subplots(figsize=(6.4, 1.8))
    bars = axes.barh(["dense (every clip)", "this run's teacher"], [dense_clips, teacher_clips],
                     color=["tab:gray", "tab:red"])
    axes.bar_label(bars, labels=[f"{dense_clips:,}", f"{teacher_clips:,}"], padding=3)
    axes.set(xlabel="clips", title="Teacher clips against dense")
    axes.set_xlim(0, max(dense_clips, teacher_clips, 1) * 1.15)
    return png(figure, 100)


def confidence_png(confidence: Sequence[float], clips: Sequence[int], selected: Sequence[int],
                   selected_by: Sequence[str]) -> bytes:
    """The student's confidence z~ over a video's clips (``clips``: their indices), each selected clip marked by
    who labelled it."""
    figure, axes = plt.subplots(figsize=(5.4, 2.4))
    axes.plot(clips, confidence, marker=".", color="tab:blue", label="student confidence z~")
    value = dict(zip(clips, confidence))
    for who, (color, text) in _BY.items():
        chosen = [c for c, by in zip(selected, selected_by) if by == who and c in value]
        if chosen:
            axes.scatter(chosen, [value[c] for c in chosen], s=80, color=color, zorder=3, label=text)
    axes.set(xlabel="clip index", ylabel="z~", ylim=(-0.05, 1.05), title="Confidence over the video")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="best")
    return png(figure, 100)
