"""Decoder faults for tests: a video that kills the process decoding it, or one that decodes at a crawl.

Off unless the environment variable ``RAYCONDI_DECODE_FAULTS`` holds a JSON object -- only raycondi's tests set
it -- ``{"crash": [MARKER, ...], "slow_s": {MARKER: SECONDS, ...}}``: decoding a video whose URI contains a
``crash`` marker ends its process at the first packet (``os._exit``, as a codec's segfault would), and one whose
URI contains a ``slow_s`` marker sleeps that long before each packet. Real crashing or pathological files are
codec- and build-specific; this lets the labelling job's handling of both be tested on any machine.
"""

from __future__ import annotations

import json
import os
import time

__all__ = ["ENV", "on_packet"]

ENV = "RAYCONDI_DECODE_FAULTS"
_FAULTS: dict = json.loads(os.environ[ENV]) if os.environ.get(ENV) else {}


def on_packet(uri: str) -> None:
    """Apply the configured fault to ``uri`` before one of its packets is decoded (nothing when off)."""
    if not _FAULTS:
        return
    if any(marker in uri for marker in _FAULTS.get("crash", ())):
        os._exit(70)
    for marker, seconds in _FAULTS.get("slow_s", {}).items():
        if marker in uri:
            time.sleep(seconds)
