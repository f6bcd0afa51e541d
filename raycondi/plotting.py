"""matplotlib for the files raycondi writes (the evaluation's plots, the labels' report): the Agg backend, as a
cluster's driver has no display, and figures as PNG bytes, so writing them (local or ``s3://``) is the caller's."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

__all__ = ["plt", "png"]


def png(figure, dpi: int) -> bytes:
    """``figure`` as PNG bytes, trimmed to what it draws, then closed (a job draws many)."""
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return out.getvalue()
