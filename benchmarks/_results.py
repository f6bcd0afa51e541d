"""What every benchmark's JSON starts with, and where it goes: ``benchmarks/results/`` unless ``--out`` says."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def provenance(benchmark: str, argv: list[str] | None) -> dict:
    """The benchmark's name, the host, the date and the command line that produced the figures."""
    return {"benchmark": benchmark, "host": platform.node(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join([f"benchmarks/{benchmark}.py", *(sys.argv[1:] if argv is None else argv)])}


def write(record: dict, out: str | None, default_name: str) -> Path:
    """Write ``record`` as JSON to ``out`` or ``benchmarks/results/{default_name}``; print and return the path."""
    path = Path(out) if out else RESULTS / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {path}")
    return path
