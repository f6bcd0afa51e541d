"""Decoded frames per second with PyAV: per codec, one process and every core, with and without resizing.

Encodes one ``--seconds`` test video per codec at ``--width`` x ``--height`` (a moving textured pattern, so
the encoder does real work; ``--codecs h264 mpeg4 vp9 mjpeg``), then decodes it:

* ``raw``: every frame to an RGB array at its own size (``frame.to_ndarray("rgb24")``), no resizing;
* ``clips``: through :func:`raycondi.video.decode.iter_clips`, the labelling job's decoder, which resizes
  and centre-crops every frame to ``--size`` and groups them into clips of ``--clip-len``; its frame count
  is the clips' frames, the last clip padded to ``--clip-len`` (N = ceil(frames / clip_len), as the paper);
* ``skimS`` (one row per ``--skim-steps`` S): the same decoder as a skimming student's pass uses it
  (``skim_step=S``): every frame decoded, every S-th resized and converted. Its frame and clip counts are
  those of ``clips`` (the clips the student scores per second); the K clips a labelling run then converts
  whole for the teacher are not in it (``label_throughput.py`` counts them).

Each is timed in one process and in ``--processes`` processes at once (default: every core), each decoding
its own pass over the file; frames/s is the total over the processes. Clips/s follows as frames/s divided by
the clip length.

``--plans`` measures instead what each strategy's decode plan (:mod:`raycondi.pipeline.plans`, the labelling
job's own code) costs on one video per stream of ``--streams`` (x264 with keyint 250 or 50 and 3 B-frames,
MPEG-4 part 2 in AVI with a 12-frame GOP, VP9 with keyint 250) at each ``--sizes``: decode seconds (one
process), frames decoded, bytes read and clips decoded for Dense, Equidistant K = 1 and 5 (seeking), and
ConDi-SR K = 5 with every-clip candidates, the same skimming every other frame, and keyframe candidates
(``KEYFRAME_CLIPS`` clip spans from each keyframe; the student is a stand-in that costs nothing, so the seconds
are decoding only), each as a share of Dense's; and
each stream's GOP (keyframes, mean frames between them). The tables are printed and the rows written as JSON
with the machine and the command:

    python benchmarks/decode_throughput.py
    python benchmarks/decode_throughput.py --plans --seconds 60 --sizes 320x240 1280x720
    python benchmarks/decode_throughput.py --seconds 2 --codecs h264 --processes 2 --skim-steps 2 --out /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np
from _results import provenance, write

from raycondi.pipeline.plans import choose_clips, unscored
from raycondi.strategies import KEYFRAME_CLIPS
from raycondi.video.decode import ClipSpec, DecodeStats, iter_clips

CONTAINERS = {"h264": ".mp4", "mpeg4": ".mp4", "vp9": ".webm", "mjpeg": ".avi"}
# stream name -> codec, file suffix, encoder options
STREAMS = {
    "x264-keyint250": ("h264", ".mp4", {"preset": "veryfast", "x264-params": "keyint=250:bframes=3"}),
    "x264-keyint50": ("h264", ".mp4", {"preset": "veryfast", "x264-params": "keyint=50:bframes=3"}),
    "mpeg4-gop12": ("mpeg4", ".avi", {"g": "12", "qscale": "4"}),
    "vp9-keyint250": ("vp9", ".webm", {"g": "250", "deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"}),
}
# (strategy, K, candidates, skim step) of each plan measured, and the row's name
PLANS = {
    "dense": ("dense", 1, "clips", 1), "equidistant_k1": ("equidistant", 1, "clips", 1),
    "equidistant_k5": ("equidistant", 5, "clips", 1), "condi_sr_k5_clips": ("condi_sr", 5, "clips", 1),
    "condi_sr_k5_clips_skim2": ("condi_sr", 5, "clips", 2), "condi_sr_k5_keyframes": ("condi_sr", 5, "keyframes", 1),
}


def encode(path: Path, codec: str, width: int, height: int, seconds: float, fps: int = 25,
           options: dict[str, str] | None = None) -> Path:
    """A test video: a textured pattern drifting diagonally, yuv420p (yuvj420p for MJPEG)."""
    ys, xs = np.mgrid[0:height, 0:width]
    texture = ((np.sin(xs / 7.0) + np.cos(ys / 5.0)) * 60 + 128).astype(np.int64)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for i in range(round(seconds * fps)):
            g = ((texture + 3 * i) % 256).astype(np.uint8)
            rgb = np.stack([g, np.roll(g, i, axis=1), 255 - g], axis=-1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


def decode_raw(path: str) -> int:
    frames = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            frames += 1
    return frames


def decode_clips(path: str, clip_len: int, size: int, skim_step: int = 1) -> int:
    return sum(clip.full_shape[0] for clip in iter_clips(path, clip_len, size, skim_step=skim_step))


def timed(processes: int, mode: str, path: str, clip_len: int, size: int) -> tuple[int, float]:
    """(frames decoded in total, wall seconds) with ``processes`` processes each decoding the file once."""
    skim_step = int(mode.removeprefix("skim")) if mode.startswith("skim") else 1
    job = (decode_raw, path) if mode == "raw" else (decode_clips, path, clip_len, size, skim_step)
    start = time.perf_counter()
    if processes == 1:
        frames = job[0](*job[1:])
    else:
        with ProcessPoolExecutor(processes) as pool:
            frames = sum(pool.map(job[0], *[[a] * processes for a in job[1:]]))
    return frames, time.perf_counter() - start


def gop(path: str) -> dict:
    """The stream's keyframes and the mean frames between them, from its packets."""
    with av.open(path) as container:
        keys = [p.is_keyframe for p in container.demux(container.streams.video[0]) if p.size]
    return {"frames": len(keys), "keyframes": sum(keys), "mean_gop": round(len(keys) / max(1, sum(keys)), 1)}


def plan_rows(path: str, stream: str, size: str, clip_len: int, crop: int) -> list[dict]:
    """One row per plan of :data:`PLANS` on ``path``, with its decode seconds as a share of Dense's."""
    rows = []
    for name, (strategy, k, candidates, skim_step) in PLANS.items():
        stats = DecodeStats()
        started = time.perf_counter()
        chosen, mode, fallback = choose_clips(path, strategy, k, spec=ClipSpec(clip_len, crop), candidates=candidates,
                                              reach=KEYFRAME_CLIPS * clip_len, scorer=unscored, skim_step=skim_step,
                                              stats=stats)
        seconds = time.perf_counter() - started
        rows.append({"stream": stream, "size": size, "plan": name, "decode_mode": mode, "fallback": fallback,
                     "seconds": round(seconds, 3), "frames_decoded": stats.frames, "bytes_read": stats.bytes_read,
                     "clips_decoded": len(chosen.clips)})
    dense = rows[0]
    for row in rows:
        row["seconds_vs_dense"] = round(row["seconds"] / dense["seconds"], 3)
        row["frames_vs_dense"] = round(row["frames_decoded"] / dense["frames_decoded"], 3)
    return rows


def main_plans(args: argparse.Namespace, argv: list[str] | None) -> dict:
    rows, gops = [], {}
    print(f"{'stream':15} {'size':9} {'plan':24} {'mode':9} {'seconds':>8} {'x dense':>8} {'frames':>7} "
          f"{'x dense':>8} {'clips':>6} {'MB read':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for stream in args.streams:
            codec, suffix, options = STREAMS[stream]
            for size in args.sizes:
                width, height = (int(v) for v in size.split("x"))
                path = str(encode(Path(tmp) / f"{stream}_{size}{suffix}", codec, width, height, args.seconds,
                                  options=options))
                gops[f"{stream} {size}"] = gop(path)
                for row in plan_rows(path, stream, size, args.clip_len, args.size):
                    rows.append(row)
                    print(f"{stream:15} {size:9} {row['plan']:24} {row['decode_mode']:9} {row['seconds']:8.3f} "
                          f"{row['seconds_vs_dense']:8.3f} {row['frames_decoded']:7} {row['frames_vs_dense']:8.3f} "
                          f"{row['clips_decoded']:6} {row['bytes_read'] / 1e6:8.2f}", flush=True)
    for name, g in gops.items():
        print(f"GOP {name}: {g['keyframes']} keyframes in {g['frames']} frames, {g['mean_gop']} frames apart")
    record = {**provenance("decode_throughput", argv), "cpus": os.cpu_count(), "pyav": av.__version__,
              "video": f"{args.seconds:g} s at 25 fps", "clip": f"{args.clip_len}x{args.size}x{args.size}",
              "streams": {name: {"codec": c, "container": x, "options": o} for name, (c, x, o) in STREAMS.items()
                          if name in args.streams},
              "gops": gops, "rows": rows}
    write(record, args.out, "decode_plans.json")
    return record


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codecs", nargs="+", default=list(CONTAINERS), choices=list(CONTAINERS))
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--size", type=int, default=112, help="the clips' square size (resize + centre crop)")
    parser.add_argument("--processes", type=int, default=os.cpu_count(), help="the all-cores run's processes")
    parser.add_argument("--skim-steps", type=int, nargs="*", default=[2, 4],
                        help="skim passes to time: every S-th frame converted (default 2 4)")
    parser.add_argument("--plans", action="store_true", help="the strategies' decode plans instead (see above)")
    parser.add_argument("--streams", nargs="+", default=list(STREAMS), choices=list(STREAMS))
    parser.add_argument("--sizes", nargs="+", default=["320x240"], help="--plans: WIDTHxHEIGHT of each video")
    parser.add_argument("--out", default=None,
                        help="JSON path (default: benchmarks/results/decode_throughput.json, decode_plans.json)")
    args = parser.parse_args(argv)
    if args.plans:
        return main_plans(args, argv)

    rows = []
    print(f"{'codec':6} {'mode':6} {'procs':>5} {'frames':>8} {'seconds':>8} {'frames/s':>10} {'clips/s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for codec in args.codecs:
            path = encode(Path(tmp) / f"test{CONTAINERS[codec]}", codec, args.width, args.height, args.seconds)
            for mode in ("raw", "clips", *(f"skim{step}" for step in args.skim_steps)):
                for processes in sorted({1, args.processes}):
                    frames, seconds = timed(processes, mode, str(path), args.clip_len, args.size)
                    row = {"codec": codec, "mode": mode, "processes": processes, "frames": frames,
                           "seconds": round(seconds, 3), "frames_per_s": round(frames / seconds, 1),
                           "clips_per_s": round(frames / seconds / args.clip_len, 1)}
                    rows.append(row)
                    print(f"{codec:6} {mode:6} {processes:5} {frames:8} {seconds:8.2f} {row['frames_per_s']:10.1f} "
                          f"{row['clips_per_s']:9.1f}", flush=True)
    record = {
        **provenance("decode_throughput", argv), "cpus": os.cpu_count(), "pyav": av.__version__,
        "video": f"{args.width}x{args.height}, {args.seconds:g} s at 25 fps", "clip": f"{args.clip_len}x{args.size}x{args.size}",
        "rows": rows,
    }
    write(record, args.out, "decode_throughput.json")
    return record


if __name__ == "__main__":
    main()
