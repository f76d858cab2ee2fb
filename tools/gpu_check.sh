#!/usr/bin/env bash
# The GPU half in one command (issue #20): on a machine with an NVIDIA GPU, nvcc, CMake and PyTorch
# (no network), within about 7 minutes:
#   1. installs the wheels carried in .whl/ (what the machine lacks: PyAV and pydantic, which the
#      training steps need) and the project from the working tree, with no index;
#   2. builds trt_plugins/ for the GPU it finds (the kernel library, and the TensorRT plugin and its
#      harness against the headers in $TENSORRT_ROOT, default third_party/TensorRT: never committed);
#   3. runs the GPU tests: the kernel against the reference (fp32/fp16/bf16, edge shapes, autograd),
#      the plugin's enqueue through the harness, x3d_s_dcf and r2plus1d_r50_dcf forward and backward
#      under autocast on the kernel, and dcf train steps on CUDA;
#   4. runs bench.correlation_cuda (our kernel, the naive loop, the bandwidth floor).
# Every log and table goes under $OUT (default ./gpu_check_out; at most 8 files, as the device tool
# returns). Exits non-zero naming each step that broke; without a GPU it builds what builds, then
# says "no GPU" and exits non-zero.
#
# usage: tools/gpu_check.sh
# Before carrying it to a GPU machine, here:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0 \
#       pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2 \
#       typing-extensions==4.15.0
#                                                                     # .whl/ is ignored (.git/info/exclude)
#   mkdir -p third_party/TensorRT && git --git-dir /work/.mirror/NVIDIA+TensorRT/repo archive HEAD include \
#       | tar -x -C third_party/TensorRT                              # third_party/ is ignored
# and carry .whl and third_party.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
tee_pid=$!
trap 'exec 1>&- 2>&-; wait "$tee_pid"' EXIT  # the log's last lines are written before the exit
export PYTHONUNBUFFERED=1
export TENSORRT_ROOT=${TENSORRT_ROOT:-$PWD/third_party/TensorRT}
WHEELS=${WHEELS:-.whl}  # the carried wheels (for Python 3.12 on the device)
started=$SECONDS
broken=()

step() {  # NAME COMMAND...: runs COMMAND with its output in $OUT/NAME.log, and remembers a failure
    local name=$1 began=$SECONDS
    shift
    echo "== $name: $*"
    if "$@" > "$OUT/$name.log" 2>&1; then
        echo "   ok ($((SECONDS - began)) s)"
    else
        echo "   FAILED ($((SECONDS - began)) s); the end of $name.log:"
        tail -n 25 "$OUT/$name.log" | sed 's/^/   | /'
        broken+=("$name")
    fi
}

install() {
    if compgen -G "$WHEELS/*.whl" > /dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/dcf-site "$WHEELS"/*.whl || return 1
    fi
    # The project as it is here; its C++ CPU kernel is optional. No deps: the machine's own torch.
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . \
        || { echo "pip could not install the project: running it from the source tree"; true; }
    python3 - <<'PY'
import importlib, sys
for name in ("torch", "numpy", "safetensors", "tqdm", "onnx", "pytest", "av", "pydantic", "dcf", "dcf.cli"):
    module = importlib.import_module(name)
    print(f"{name} {getattr(module, '__version__', '')} from {getattr(module, '__file__', '?')}")
import torch
print("CUDA", torch.version.cuda, "GPU", torch.cuda.get_device_name() if torch.cuda.is_available() else None)
PY
}

build() {
    local arch=90
    if python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
        arch=$(python3 -c "import torch; print(''.join(map(str, torch.cuda.get_device_capability())))")
    fi
    [[ -f "$TENSORRT_ROOT/include/NvInfer.h" ]] || echo "no TensorRT headers at $TENSORRT_ROOT: the plugin is not built"
    cmake -S trt_plugins -B trt_plugins/build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$arch" \
        -DTENSORRT_ROOT="$TENSORRT_ROOT" &&
        cmake --build trt_plugins/build -j "$(nproc)" &&
        ls -l trt_plugins/build/*.so
}

export PYTHONPATH=/tmp/dcf-site:$PWD${PYTHONPATH:+:$PYTHONPATH}
step install install
step build build
if python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    export DCF_CUDA_LIBRARY=$PWD/trt_plugins/build/libdcf_correlation_cuda.so
    step tests python3 -m pytest -m gpu -p no:cacheprovider -q -rs --junitxml="$OUT/tests.xml" \
        tests/ops/test_correlation_cuda.py tests/trt tests/models/test_cuda_amp.py tests/training/test_train_cuda.py
    if grep -q ' skipped' "$OUT/tests.log"; then
        echo "   (some GPU tests were skipped: see the reasons at the end of tests.log)"
        broken+=("tests skipped")
    fi
    step bench python3 -m bench.correlation_cuda --out "$OUT/correlation_cuda.md"
else
    echo "== no GPU: PyTorch sees no CUDA device, so nothing ran on one"
    broken+=("no GPU")
fi
echo "== $((SECONDS - started)) s in all"
if ((${#broken[@]})); then
    echo "gpu_check: FAILED: ${broken[*]}"
    exit 1
fi
echo "gpu_check: everything passed"
