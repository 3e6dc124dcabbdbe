#!/usr/bin/env bash
# Every GPU measurement and the GPU test run, for one short lease of a CUDA machine.
#
#   bench/gpu_check.sh bench   # the measurements (~5 min on an H100), log in $OUT/gpu-bench.log
#   bench/gpu_check.sh test    # the whole test suite on the GPU machine (~2-3 min), log in $OUT/gpu-test.log
#   bench/gpu_check.sh startup # the first epoch with start-up, with and without a bytecode cache (~1 min)
#   bench/gpu_check.sh test startup   # several modes, in the order given, one log: $OUT/gpu-test-startup.log
#   bench/gpu_check.sh all     # test, startup, bench (~8-9 min on an H100), log in $OUT/gpu-all.log
#
# What it expects in the repository root (both git-ignored; see bench/README.md, "On a GPU"):
#   .gpu-data/  MNIST/raw/*.gz and FashionMNIST/raw/*.gz (a copy of the data folder), and a copy of
#               gpu_floor.py, the floor of one CUDA graph of the whole step, if it is to be measured;
#   .whl/       wheels of what the GPU machine lacks (pythae 0.1.2 and pydantic with its needs).
# The machine needs torch with CUDA, torchvision, click, pluggy, torchmetrics, tqdm and pytest.
set -u
modes=("$@")
[ ${#modes[@]} -eq 0 ] && modes=(all)
[ "${modes[*]}" = all ] && modes=(test startup bench)  # what was never seen on a GPU first
for mode in "${modes[@]}"; do
    case "$mode" in
        bench|test|startup) ;;
        *) echo "usage: bench/gpu_check.sh all | bench|startup|test ... (got '$mode')" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-gpu-out}
DATA=$(cd "${ZOO_GPU_DATA:-.gpu-data}" 2>/dev/null && pwd) || { echo "no ${ZOO_GPU_DATA:-.gpu-data} folder" >&2; exit 2; }
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

setup() {
    [ -n "${ZOO_GPU_SET_UP:-}" ] && return  # once per call of this script
    ZOO_GPU_SET_UP=1
    echo "== $(date -u +%FT%TZ) setup"
    nvidia-smi -L || true
    if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
    python3 -c "import torch, zoo; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'zoo', zoo.__version__)"
    lscpu | grep -E "Model name|^CPU\(s\)" || true
    # Python compiles every module it cannot find bytecode for: a start-up figure means little
    # without knowing whether the installed packages have theirs.
    python3 -c "import sys, pathlib, torch; d = pathlib.Path(torch.__file__).parent / '__pycache__'; \
print('bytecode: PYTHONDONTWRITEBYTECODE', sys.flags.dont_write_bytecode, '| torch/__pycache__ holds', \
len(list(d.glob('*.pyc'))) if d.is_dir() else 0, 'files')"
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
    # Stop 6 measured --precision fp32, --precision bf16 and --no-cuda-graph (docs/benchmarks.md); none
    # by default, to keep the lease for what was never measured.
    # ZOO_GPU_VARIANTS='--precision fp32;--precision bf16;--no-cuda-graph;--compile' runs them again.
    IFS=';' read -r -a variants <<< "${ZOO_GPU_VARIANTS:-}"
    for args in "${variants[@]}"; do
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
    echo "== $(date -u +%FT%TZ) resume on cuda: 2 epochs straight against 1 + resumed to 2, bit for bit?"
    tb python3 bench/resume_check.py --device cuda --data-dir "$DATA" --deterministic
    # The GPU machine's host CPU has AVX-512 BF16, like the Zen 5 of issue 10: do bf16 autocast and the
    # reference plugin's AVX2-tuned single-channel paths win or lose on such a CPU? (CPU only, 1 round.)
    echo "== $(date -u +%FT%TZ) CPU levers on this machine's CPU (bf16, plugin fast paths), 1 round"
    tb python3 bench/cpu_levers.py --data-dir "$DATA" --rounds 1 --only bf16 no-plugin-fast-paths
    echo "== $(date -u +%FT%TZ) bench done"
}

startup() {
    # The first epoch with start-up (issue 10: under 10 s): 'zoo train --epochs 1' from the command's
    # start to its epoch 1 line, as the machine is, then with a bytecode cache
    # (PYTHONPYCACHEPREFIX, filled by one untimed run), as after an ordinary pip install.
    echo "== $(date -u +%FT%TZ) start-up: zoo train vae-conv-mnist --epochs 1 on cuda"
    echo "columns: load system epoch-s first-epoch-s test-ELBO x-seed x-pythae x-idle command-s to-epoch-1-s"
    tb python3 bench/epoch_time.py --device cuda --data-dir "$DATA" --epochs 1 --skip-seed --skip-pythae | tail -3 | head -1
    python3 -X importtime -m zoo train vae-conv-mnist --device cuda --epochs 1 --data-dir "$DATA" \
        --out /tmp/startup-run --overwrite --no-progress 2> "$OUT/importtime.txt" >/dev/null
    python3 - "$OUT/importtime.txt" <<'PY'
import sys
top = [l.split("|") for l in open(sys.argv[1]) if l.startswith("import time:") and "|" in l]
top = [(int(c), n.rstrip()) for _, c, n in (t for t in top if len(t) == 3) if n[1:2] != " " and c.strip().isdigit()]
print(f"imports: {sum(c for c, _ in top) / 1e6:.2f} s in all; largest: "
      + ", ".join(f"{n.strip()} {c / 1e6:.2f}" for c, n in sorted(top, reverse=True)[:6]))
PY
    echo "-- with a bytecode cache"
    (
        export PYTHONPYCACHEPREFIX=/tmp/pycache
        unset PYTHONDONTWRITEBYTECODE
        python3 -m zoo train vae-conv-mnist --device cuda --epochs 1 --data-dir "$DATA" --out /tmp/startup-run \
            --overwrite --no-progress >/dev/null 2>&1
        tb python3 bench/epoch_time.py --device cuda --data-dir "$DATA" --epochs 1 --skip-seed --skip-pythae \
            | tail -3 | head -1
    )
}

tests() {
    setup
    echo "== $(date -u +%FT%TZ) test suite"
    # pytest-xdist spreads the suite over the machine's cores where it is installed (the GPU image has it).
    # Each worker gets its share of the cores (torch would start one thread per core in each).
    workers=()
    threads=${OMP_NUM_THREADS:-$(nproc)}
    if python3 -c "import xdist" 2>/dev/null; then
        workers=(-n "${ZOO_GPU_TEST_WORKERS:-8}")
        threads=$(( $(nproc) / ${ZOO_GPU_TEST_WORKERS:-8} > 0 ? $(nproc) / ${ZOO_GPU_TEST_WORKERS:-8} : 1 ))
    fi
    # A test that hangs fails alone (pytest-timeout) instead of taking the summary with it.
    python3 -c "import pytest_timeout" 2>/dev/null && workers+=(--timeout 300)
    # The suite starts many 'zoo' subprocesses: with a bytecode cache only the first compiles torch's
    # modules (the image has none; see startup). Only this command sees these settings: the
    # measurements after it run as the machine is.
    env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=/tmp/pycache ZOO_TEST_DATA="$DATA" OMP_NUM_THREADS="$threads" \
        timeout "${ZOO_GPU_TEST_TIMEOUT:-300}" python3 -m pytest -q -p no:cacheprovider -rfEs \
        --tb=short --durations=25 --junitxml="$OUT/gpu-tests.xml" "${workers[@]}"
    echo "== $(date -u +%FT%TZ) tests exited $?"
}

name=$(IFS=-; echo "${*:-all}")  # the log's name: gpu-all.log, gpu-test-startup.log, ...
{
    for mode in "${modes[@]}"; do
        case "$mode" in
            bench) bench ;;
            test) tests ;;
            startup) setup; startup ;;
        esac
    done
} 2>&1 | tee "$OUT/gpu-$name.log"
