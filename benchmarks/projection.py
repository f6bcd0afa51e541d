"""Videos/s per GPU node for Dense, Equidistant and ConDi-SR, projected from measured parts: on paper before a
GPU measures it.

A node has ``--cores`` CPU cores that decode and one GPU that runs the models. Per video and strategy:

* decode core-seconds: the strategy's decode plan on that stream, measured in one process by
  ``decode_throughput.py --plans`` (``results/decode_plans.json``, on this machine's cores), and for H.264, once
  more scaled so that Dense decodes at the H100 box's PyAV rate on its 16 cores (5,200 frames/s at 320x240,
  1,880 at 1280x720), the plans keeping their measured ratios;
* GPU seconds: the teacher's clips over its clips/s, plus for ConDi-SR every clip the student scores (all N, or
  the keyframe candidates) over the student's. The rates come from a GPU ``model_throughput`` record
  (``results/model_throughput_cuda*.json``, best batch) when there is one, else from the anchors measured on an
  H100 box (ResNeXt-101 fp32 2,094 clips/s; the student's anchor is a straightforward 3D MobileNetV2 1.0x in
  bf16, 2,324 clips/s, as no ShuffleNetV2 2.0x GPU figure exists), and the output says which.

The node's rate is the slower of ``cores / decode core-seconds`` and ``1 / GPU seconds``. Printed as a table and
written as JSON:

    python benchmarks/projection.py                      # 320x240 one-minute videos, K = 5, 16 cores
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _results import RESULTS, provenance, write

H100_ANCHORS = {"teacher": 2094.0, "student": 2324.0}  # clips/s, 16x112x112, H100 box (see DESIGN.md)
DECODE_ANCHORS = {"320x240": 5200.0, "1280x720": 1880.0}  # PyAV H.264 frames/s, 16 processes on the H100 box
ANCHOR_CORES = 16
PLANS = {"Dense": ("dense", "teacher"), "Equidistant K=5": ("equidistant_k5", "teacher"),
         "ConDi-SR K=5 (every clip)": ("condi_sr_k5_clips", "both"),
         "ConDi-SR K=5 (keyframes)": ("condi_sr_k5_keyframes", "both")}


def gpu_rates(results: Path) -> tuple[dict[str, float], str]:
    """``{"teacher": clips/s, "student": clips/s}`` from a GPU model_throughput record, else the H100 anchors."""
    for path in sorted(results.glob("model_throughput_cuda*.json")):
        rows = [r for r in json.loads(path.read_text())["rows"] if not r.get("error")]
        best = {role: max((r["clips_per_s"] for r in rows if r["model"].startswith(role)), default=None)
                for role in ("teacher", "student")}
        if all(best.values()):
            return best, f"measured: {path.name}"
    return dict(H100_ANCHORS), "H100 anchors (ResNeXt-101 fp32; student: 3D MobileNetV2 1.0x bf16), not measured here"


def project(plans: list[dict], rates: dict[str, float], *, cores: int, k: int) -> list[dict]:
    """One row per stream, size, strategy of :data:`PLANS` and decode rate (this machine's; the H100 box's)."""
    rows = []
    by_video = {}
    for row in plans:
        by_video.setdefault((row["stream"], row["size"]), {})[row["plan"]] = row
    for (stream, size), measured in by_video.items():
        dense = measured["dense"]
        anchor = DECODE_ANCHORS.get(size) if stream.startswith("x264") else None
        # core-seconds per measured second, when Dense decodes at the anchor's per-core rate
        scale = dense["frames_decoded"] * ANCHOR_CORES / anchor / dense["seconds"] if anchor else None
        for name, (plan, models) in PLANS.items():
            decode = measured[plan]
            student_clips = decode["clips_decoded"] if models == "both" else 0
            teacher_clips = dense["clips_decoded"] if plan == "dense" else k
            gpu_s = teacher_clips / rates["teacher"] + student_clips / rates["student"]
            sources = [("this machine's cores", decode["seconds"])]
            sources += [("H100 box's cores (anchor)", decode["seconds"] * scale)] if scale else []
            for source, core_s in sources:
                decode_rate = cores / core_s
                rows.append({"stream": stream, "size": size, "strategy": name, "decode_rate_source": source,
                             "decode_core_s": round(core_s, 4), "gpu_s": round(gpu_s, 5),
                             "videos_per_s_decode": round(decode_rate, 1), "videos_per_s_gpu": round(1 / gpu_s, 1),
                             "videos_per_s": round(min(decode_rate, 1 / gpu_s), 1),
                             "bound": "decode" if decode_rate < 1 / gpu_s else "GPU"})
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plans", default=str(RESULTS / "decode_plans.json"), help="decode_throughput.py --plans JSON")
    parser.add_argument("--results", default=str(RESULTS), help="where to look for model_throughput_cuda*.json")
    parser.add_argument("--cores", type=int, default=16, help="decoding cores per GPU node (default 16)")
    parser.add_argument("--k", type=int, default=5, help="the teacher's clips per video (default 5)")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/projection_gpu_node.json)")
    args = parser.parse_args(argv)

    plans = json.loads(Path(args.plans).read_text())
    rates, rates_source = gpu_rates(Path(args.results))
    rows = project(plans["rows"], rates, cores=args.cores, k=args.k)
    print(f"GPU node: {args.cores} decoding cores, one GPU; model rates: {rates_source} "
          f"(teacher {rates['teacher']:g}, student {rates['student']:g} clips/s); K = {args.k}")
    print(f"{'stream':15} {'size':9} {'strategy':26} {'decode rates from':27} {'decode':>8} {'GPU':>8} "
          f"{'videos/s':>9} {'bound':>6}")
    for r in rows:
        print(f"{r['stream']:15} {r['size']:9} {r['strategy']:26} {r['decode_rate_source']:27} "
              f"{r['videos_per_s_decode']:8.1f} {r['videos_per_s_gpu']:8.1f} {r['videos_per_s']:9.1f} {r['bound']:>6}")
    record = {**provenance("projection", argv), "cores": args.cores, "k": args.k, "model_rates": rates,
              "model_rates_source": rates_source, "decode_anchors": DECODE_ANCHORS,
              "decode_plans": {"file": args.plans, "command": plans["command"], "host": plans["host"]}, "rows": rows}
    write(record, args.out, "projection_gpu_node.json")
    return record


if __name__ == "__main__":
    main()
