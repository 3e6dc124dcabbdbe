#!/usr/bin/env bash
# Every GPU measurement and the GPU test run, for one short lease of a CUDA machine.
#
#   bench/gpu_check.sh bench   # the measurements (~5 min on an H100), log in $OUT/gpu-bench.log
#   bench/gpu_check.sh test    # the whole test suite on the GPU machine (~4 min), log in $OUT/gpu-test.log
#   bench/gpu_check.sh all     # both
#
# What it expects in the repository root (both git-ignored; see bench/README.md, "On a GPU"):
#   .gpu-data/  MNIST/raw/*.gz and FashionMNIST/raw/*.gz (a copy of the data folder), and a copy of
#               gpu_floor.py, the floor of one CUDA graph of the whole step, if it is to be measured;
#   .whl/       wheels of what the GPU machine lacks (pythae 0.1.2 and pydantic with its needs).
# The machine needs torch with CUDA, torchvision, click, pluggy, torchmetrics, tqdm and pytest.
set -u
mode=${1:-all}
OUT=${OUT:-gpu-out}
DATA=${ZOO_GPU_DATA:-.gpu-data}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

setup() {
    echo "== $(date -u +%FT%TZ) setup"
    nvidia-smi -L || true
    if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
    python3 -c "import torch, zoo; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'zoo', zoo.__version__)"
    lscpu | grep -E "Model name|^CPU\(s\)" || true
}

floor() {
    # gpu_floor.py reads uncompressed IDX files under ROOT/MNIST/raw.
    [ -f "$DATA/gpu_floor.py" ] || { echo "no $DATA/gpu_floor.py: floor not measured"; return; }
    mkdir -p /tmp/floor/MNIST/raw
    for f in "$DATA"/MNIST/raw/*.gz; do gunzip -c "$f" > "/tmp/floor/MNIST/raw/$(basename "$f" .gz)"; done
    echo "== floor, fp32"; tb python3 "$DATA/gpu_floor.py" --root /tmp/floor --epochs 3
    echo "== floor, bf16"; tb python3 "$DATA/gpu_floor.py" --root /tmp/floor --epochs 3 --bf16
}

# Each measurement is time-boxed, so that one hang cannot take the whole lease.
tb() { timeout "${ZOO_GPU_STEP_TIMEOUT:-150}" "$@" || echo "!! exited $?: $*"; }

bench() {
    setup
    floor
    echo "== $(date -u +%FT%TZ) vae-conv-mnist: zoo (defaults), the seed's loop and pythae on cuda, 3 epochs"
    tb python3 bench/epoch_time.py --device cuda --data-dir "$DATA" --epochs 3 --json-out "$OUT/epoch-cuda.json"
    for args in "--precision fp32" "--precision bf16" "--no-cuda-graph" "--compile"; do
        echo "== zoo train $args"
        tb python3 bench/epoch_time.py --device cuda --data-dir "$DATA" --epochs 3 --skip-seed --skip-pythae \
            --zoo-args="$args"
    done
    echo "== $(date -u +%FT%TZ) IW estimate on cuda: zoo against pythae's get_nll"
    tb python3 bench/iw_speed.py --device cuda --data-dir "$DATA" --images 1000 --samples 1000 --rounds 2
    for model in iwae vamp; do
        echo "== $(date -u +%FT%TZ) $model: zoo recipe against pythae on cuda, 1 epoch, K=1000 on 1000 images"
        tb python3 bench/families_vs_pythae.py --device cuda --data-dir "$DATA" --model $model --epochs 1 \
            --samples 1000 --limit 1000 --json-out "$OUT/$model-cuda.json"
    done
    echo "== $(date -u +%FT%TZ) bench done"
}

startup() {
    # Where the first epoch's wall time goes, start-up included: a cProfile of one whole 'zoo train'.
    echo "== $(date -u +%FT%TZ) startup profile: zoo train vae-conv-mnist --epochs 1 on cuda"
    local TIMEFORMAT="wall %R s"
    time python3 -m cProfile -o "$OUT/startup.prof" -m zoo train vae-conv-mnist --device cuda \
        --epochs 1 --data-dir "$DATA" --out /tmp/startup-run --overwrite --no-progress
    echo "second run, warm caches:"
    time python3 -m zoo train vae-conv-mnist --device cuda \
        --epochs 1 --data-dir "$DATA" --out /tmp/startup-run --overwrite --no-progress
}

tests() {
    setup
    echo "== $(date -u +%FT%TZ) test suite"
    # pytest-xdist spreads the suite over the machine's cores where it is installed (the GPU image has it).
    workers=()
    python3 -c "import xdist" 2>/dev/null && workers=(-n "${ZOO_GPU_TEST_WORKERS:-8}")
    ZOO_TEST_DATA="$DATA" timeout "${ZOO_GPU_TEST_TIMEOUT:-420}" python3 -m pytest -q -p no:cacheprovider -rfEs \
        --tb=short --durations=25 --junitxml="$OUT/gpu-tests.xml" "${workers[@]}"
    echo "== $(date -u +%FT%TZ) tests exited $?"
}

case "$mode" in
    bench) bench 2>&1 | tee "$OUT/gpu-bench.log" ;;
    test) tests 2>&1 | tee "$OUT/gpu-test.log" ;;
    startup) { setup; startup; } 2>&1 | tee "$OUT/gpu-startup.log" ;;
    all) { bench; tests; } 2>&1 | tee "$OUT/gpu-all.log" ;;
    *) echo "usage: bench/gpu_check.sh bench|test|all" >&2; exit 2 ;;
esac
