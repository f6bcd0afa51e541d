#!/usr/bin/env bash
# The GPU measurements of the labelling job, in one run of at most 8 minutes on a GPU machine without Ray or PyAV
# (an H200 with 16 cores, Python 3.12, torch 2.11). Prepare here, where pip works, from the repository's root:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl av==19.0.2 pynvvideocodec==2.2.4      # 35 MB + 27 MB
#
# then run it there with `.whl` carried: `bash benchmarks/gpu_suite.sh`. It writes, under benchmarks/results/:
#   model_throughput_cuda.json      teacher and students: fp32/bf16, channels_last_3d, compile, CUDA graphs, batches
#   gpu_harness_cuda.json           Dense and ConDi-SR K=5 (every clip with PyAV and NVDEC, keyframes) videos/s
#   gpu_tests.txt                   the CUDA-only tests (NVDEC against PyAV, CUDA graphs) and their verdicts
# Set RESULTS to write elsewhere (the device tool brings back only $OUT: RESULTS=$OUT). SMOKE=1 runs every step at
# toy sizes, on CPU too, to check the script before spending GPU time on it (tests/test_benchmarks.py does).
set -uo pipefail
cd "$(dirname "$0")/.."
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then RESULTS=${RESULTS:-$(mktemp -d)}; else RESULTS=${RESULTS:-benchmarks/results}; fi
mkdir -p "$RESULTS"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
python3 -c "import torch, av; print('torch', torch.__version__, 'av', av.__version__,
           torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"
if [ "$SMOKE" = 1 ]; then  # compiling on a CPU takes minutes: eager only
    MODELS="--models teacher:shufflenetv2_3d:width=0.25 student:shufflenetv2_3d:0.25 --clip 4x32x32 --classes 5"
    COMPILED="--models student:shufflenetv2_3d:0.25 --clip 4x32x32 --classes 5 --compile off"
    BATCHES="2 4"; BATCH=2; ITERS="--warmup 1 --iters 1"
    VIDEOS="--videos 3 --seconds 2 --width 64 --height 48 --size 32 --clip-len 4 --classes 3 --workers 2
            --teacher-arch shufflenetv2_3d --student-width 0.25"
else
    MODELS="--models teacher:resnext3d:101 student:shufflenetv2_3d:2.0 student:mobilenetv2_3d:1.0
            student:shufflenetv2_3d:width=2.0,frame_step=2"
    COMPILED="--models teacher:resnext3d:101 student:shufflenetv2_3d:2.0 --compile on"
    BATCHES="16 64 128"; BATCH=64; ITERS="--warmup 3 --iters 10"
    VIDEOS="--videos 32 --seconds 60 --workers 15"
fi
python3 -c "import PyNvVideoCodec" 2>/dev/null && DECODERS="pyav nvdec" || DECODERS=pyav
echo "decoders: $DECODERS"

# 1. the CUDA-only tests (about 30 s)
timeout 120 python3 -m pytest -q -p no:cacheprovider -rs tests/test_nvdec.py tests/test_gpu_stage.py \
    2>&1 | tee "$RESULTS/gpu_tests.txt" | tail -5

# 2. the models, eager, every precision, layout and batch size (about 90 s)
timeout 200 python3 benchmarks/model_throughput.py $MODELS --batch-sizes $BATCHES $ITERS \
    --out "$RESULTS/model_throughput_cuda.json"
# ... and compiled (default mode and CUDA graphs), at one batch size: compiling is slow (about 120 s)
timeout 240 python3 benchmarks/model_throughput.py $COMPILED --batch-sizes $BATCH --cuda-graphs $ITERS \
    --out "$RESULTS/model_throughput_cuda_compiled.json"

# 3. the labelling stages: 32 one-minute 320x240 videos made here, 15 decode workers (about 150 s)
timeout 300 python3 benchmarks/gpu_harness.py $VIDEOS --decoder $DECODERS --workdir "/tmp/raycondi-gpu-harness-$SMOKE" \
    --out "$RESULTS/gpu_harness_cuda.json"
python3 benchmarks/projection.py --results "$RESULTS" --out "$RESULTS/projection_gpu_node.json"
echo "results in $RESULTS"
