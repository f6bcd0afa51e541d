"""``raycondi report`` on a million-row labelling output: seconds and peak memory of :func:`write_report`.

Writes ``--rows`` synthetic rows with the real output schema (every list column filled: ``--clips`` clip
confidences per row, K = 3 selected clips, top-5; 1 % error rows of a few reasons whose times differ) as
``--files`` Parquet files, then times ``write_report`` in a fresh process (so its peak RSS is the report's, not
the generator's). The rows' URIs point nowhere: no video is decoded, and each sampled video's section must say
so in a note rather than fail the report -- the count of those notes is checked.

    python benchmarks/report_many.py                 # 1,000,000 rows in 4 files

The table is printed and the figures written to ``benchmarks/results/report_many.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _results import provenance, write

from raycondi.audit import ReportConfig, write_report
from raycondi.pipeline.schema import OUTPUT_SCHEMA

CLASSES = np.array([f"class_{i:03d}" for i in range(400)])  # a Kinetics-sized label set
REASONS = ("corrupt or unreadable video data near {t:.2f} s (Invalid data found when processing input)",
           "not a readable media file or truncated before its index (Invalid data found when processing input)",
           "decoding took longer than the video timeout of 60 s (--video-timeout)")
K = 3


def _lists(values: np.ndarray, per_row: int, kind: pa.DataType) -> pa.ListArray:
    """``values`` cut into lists of ``per_row`` each."""
    offsets = np.arange(0, len(values) + 1, per_row, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, kind))


def synthetic_rows(first: int, rows: int, clips: int, rng: np.random.Generator) -> pa.Table:
    """``rows`` output rows, video ids from ``first``: condi_sr, K = 3 of ``clips`` clips, 1 % errors."""
    ids = np.char.add("video_", np.arange(first, first + rows).astype(str))
    error = rng.random(rows) < 0.01
    label = rng.integers(0, len(CLASSES), rows)
    score = rng.beta(5, 2, rows)
    confidence = rng.random(rows * clips).astype(np.float32)
    selected = np.tile(np.arange(K, dtype=np.int32), rows)
    reasons = [REASONS[i % len(REASONS)].format(t=t) for i, t in enumerate(rng.random(int(error.sum())) * 10)]
    columns = {
        "video_id": pa.array(ids), "uri": pa.array(np.char.add("/nowhere/", np.char.add(ids, ".mp4"))),
        "status": pa.array(np.where(error, "error", "ok")),
        "error": pa.array(_place(error, reasons), pa.string()),
        "label": pa.array(CLASSES[label]), "label_index": pa.array(label.astype(np.int32)),
        "score": pa.array(score), "top5_labels": _lists(CLASSES[np.repeat(label, 5)], 5, pa.string()),
        "top5_scores": _lists(np.repeat(score, 5), 5, pa.float64()),
        "num_clips": pa.array(np.full(rows, clips, np.int32)), "duration_s": pa.array(np.full(rows, clips * 0.64)),
        "strategy": pa.array(["condi_sr"] * rows), "k": pa.array(np.full(rows, K, np.int32)),
        "k_student": pa.array(np.ones(rows, np.int32)), "selected_clips": _lists(selected, K, pa.int32()),
        "selected_start_s": _lists(selected * 0.64, K, pa.float64()),
        "selected_end_s": _lists((selected + 1) * 0.64, K, pa.float64()),
        "selected_confidence": _lists(rng.random(rows * K).astype(np.float32), K, pa.float32()),
        "selected_by": _lists(np.tile(np.array(["student", "teacher", "teacher"]), rows), K, pa.string()),
        "teacher_clips": pa.array(np.where(error, 0, K - 1).astype(np.int32)),
        "clip_confidence": _lists(confidence, clips, pa.float32()),
        "student_model": pa.array(["/models/student"] * rows), "teacher_model": pa.array(["/models/teacher"] * rows),
        "run_id": pa.array(["bench"] * rows),
    }
    return pa.table({f.name: columns.get(f.name, pa.nulls(rows, f.type)) for f in OUTPUT_SCHEMA}, schema=OUTPUT_SCHEMA)


def _place(mask: np.ndarray, values: list[str]) -> np.ndarray:
    """``values`` where ``mask`` is true, None elsewhere."""
    placed = np.array([None] * len(mask), object)
    placed[mask] = values
    return placed


def generate(folder: Path, rows: int, files: int, clips: int) -> int:
    """Write the rows as ``files`` part files; their total size in bytes."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    edges = np.linspace(0, rows, files + 1).astype(int)
    for number, (start, end) in enumerate(zip(edges[:-1], edges[1:])):
        pq.write_table(synthetic_rows(int(start), int(end - start), clips, rng),
                       folder / f"part-bench-{number:06d}.parquet")
    return sum(p.stat().st_size for p in folder.glob("*.parquet"))


def _measure(labels: str, videos: int, results) -> None:
    """In a fresh process: the report, its seconds and this process's peak RSS."""
    started = time.perf_counter()
    summary = write_report(ReportConfig(labels, videos=videos))
    seconds = time.perf_counter() - started
    results.put({"seconds": round(seconds, 2), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF)
                                                                         .ru_maxrss / 1024, 1),
                 "html": summary.html, "rows": summary.rows, "ok": summary.ok, "errors": summary.errors,
                 "videos_shown": len(summary.videos), "pngs": len(summary.pngs)})


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--clips", type=int, default=20, help="clip confidences per row (default 20)")
    parser.add_argument("--videos", type=int, default=8, help="videos sampled by the report (default 8)")
    parser.add_argument("--workdir", default=None, help="where the output goes (default: a temp dir)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/report_many.json)")
    args = parser.parse_args(argv)

    labels = Path(args.workdir or tempfile.mkdtemp(prefix="report_many_")) / "labels"
    started = time.perf_counter()
    size = generate(labels, args.rows, args.files, args.clips)
    generated = time.perf_counter() - started
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_measure, args=(str(labels), args.videos, results))
    child.start()
    measured = results.get()
    child.join()
    page = Path(measured.pop("html")).read_text()
    record = {**provenance("report_many", argv), "rows": args.rows, "files": args.files, "clips": args.clips,
              "parquet_mib": round(size / 2**20, 1), "generate_seconds": round(generated, 1), **measured,
              "rows_per_second": round(args.rows / measured["seconds"]), "html_kib": round(len(page) / 1024, 1),
              "decode_notes": page.count("frames not shown: ")}
    assert record["decode_notes"] == record["videos_shown"] == args.videos, "every sampled video needs its note"
    width = max(map(len, record))
    for key, value in record.items():
        print(f"{key:<{width}}  {value}")
    write(record, args.out, "report_many.json")
    return record


if __name__ == "__main__":
    main()
