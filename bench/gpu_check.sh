#!/usr/bin/env bash
# Every GPU measurement and the GPU test run, in a few minutes of a CUDA machine.
#
#   bench/gpu_check.sh bench   # the measurements (~5 min on an H100), log in $OUT/gpu-bench.log
#   bench/gpu_check.sh test    # the whole test suite on the GPU machine (~2-3 min), log in $OUT/gpu-test.log
#   bench/gpu_check.sh startup # the first epoch with start-up, with and without a bytecode cache (~1 min)
#   bench/gpu_check.sh test startup   # several modes, in the order given, one log: $OUT/gpu-test-startup.log
#   bench/gpu_check.sh all     # test, startup, bench (~8-9 min on an H100), log in $OUT/gpu-all.log
#   bench/gpu_check.sh resume | variants | cpu   # parts of bench alone: bit-exact resumption per
#       --deterministic mode; the zoo with $ZOO_GPU_VARIANTS (default --compile); the host CPU's levers
#       (ZOO_GPU_CPU_CORES=0,1 pins them to those cores, ZOO_GPU_CPU_ROUNDS rounds)
# ZOO_GPU_TEST_ARGS adds pytest arguments to 'test' (e.g. '-m gpu' for the GPU-only tests).
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
        bench|test|startup|resume|variants|cpu) ;;
        *) echo "usage: bench/gpu_check.sh all | bench|startup|test|resume|variants|cpu ... (got '$mode')" >&2
           exit 2 ;;
    esac
done
OUT=${OUT:-gpu-out}
DATA=$(cd "${ZOO_GPU_DATA:-.gpu-data}" 2>/dev/null && pwd) || { echo "no ${ZOO_GPU_DATA:-.gpu-data} folder" >&2; exit 2; }
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PYTHAE=()  # (--skip-pythae) when pythae does not import: set by setup
PYCACHE=/tmp/pycache  # the one bytecode cache of the suite, the cached start-up run and bench

setup() {
    [ -n "${ZOO_GPU_SET_UP:-}" ] && return  # once per call of this script
    ZOO_GPU_SET_UP=1
    echo "== $(date -u +%FT%TZ) setup"
    nvidia-smi -L || true
    # Python compiles every module it cannot find bytecode for: a start-up figure means little
    # without knowing whether the installed packages have theirs. Read before anything imports torch.
    python3 -c "import os, sys, pathlib, importlib.util as u; \
d = pathlib.Path(u.find_spec('torch').submodule_search_locations[0]) / '__pycache__'; \
print('bytecode: PYTHONDONTWRITEBYTECODE', os.environ.get('PYTHONDONTWRITEBYTECODE'), '| pycache_prefix', \
sys.pycache_prefix, '| torch/__pycache__ holds', len(list(d.glob('*.pyc'))) if d.is_dir() else 0, 'files')"
    # A second invocation on the same machine finds the first one's installs.
    if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
        [ -d /tmp/site/pythae ] || python3 -m pip install -q --no-index --disable-pip-version-check --no-deps \
            --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    python3 -m pip install -q --no-index --disable-pip-version-check --no-deps --no-build-isolation -e . || exit 1
    python3 -c "import torch, zoo; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'zoo', zoo.__version__)"
    lscpu | grep -E "Model name|^CPU\(s\)" || true
    # Without pythae the tables still get the zoo's and the seed loop's rows.
    python3 -c "import pythae.models, pythae.pipelines" 2>/dev/null \
        || { PYTHAE=(--skip-pythae); echo "!! pythae does not import here: its rows are skipped"; }
}

floor() {
    # gpu_floor.py reads uncompressed IDX files under ROOT/MNIST/raw.
    [ -f "$DATA/gpu_floor.py" ] || { echo "no $DATA/gpu_floor.py: floor not measured"; return; }
    mkdir -p /tmp/floor/MNIST/raw
    for f in "$DATA"/MNIST/raw/*.gz; do gunzip -c "$f" > "/tmp/floor/MNIST/raw/$(basename "$f" .gz)"; done
    echo "== floor, fp32"; tb python3 "$DATA/gpu_floor.py" --root /tmp/floor --epochs 3
    echo "== floor, bf16"; tb python3 "$DATA/gpu_floor.py" --root /tmp/floor --epochs 3 --bf16
}

# Each measurement is time-boxed, so that one hang cannot take the machine's whole time.
tb() { timeout "${ZOO_GPU_STEP_TIMEOUT:-150}" "$@" || echo "!! exited $?: $*"; }

cached_setup() {
    # The measurements' environment (run it in a subshell): a bytecode cache shared by their processes.
    unset PYTHONDONTWRITEBYTECODE
    export PYTHONPYCACHEPREFIX="$PYCACHE"
    setup
}

bench() {
    # Every process here would compile torch's modules again on an image without bytecode (about
    # 6 s each): the measurements share a bytecode cache. That changes only the start-up columns
    # ('command s', 'to epoch 1 s'); 'startup' gives the first epoch both ways.
    cached_setup
    floor
    echo "== $(date -u +%FT%TZ) vae-conv-mnist: zoo (defaults), the seed's loop and pythae on cuda, 3 epochs"
    tb python3 bench/epoch_time.py --device cuda --data-dir "$DATA" --epochs 3 --json-out "$OUT/epoch-cuda.json" \
        "${PYTHAE[@]}"
    # --precision fp32, --precision bf16, --no-cuda-graph and --compile have figures in docs/benchmarks.md;
    # none runs by default, to keep the time for the rest. 'variants' runs them.
    [ -n "${ZOO_GPU_VARIANTS:-}" ] && variants
    echo "== $(date -u +%FT%TZ) IW estimate on cuda: zoo against pythae's get_nll"
    tb python3 bench/iw_speed.py --device cuda --data-dir "$DATA" --images 1000 --samples 1000 --rounds 2
    for model in iwae vamp; do
        echo "== $(date -u +%FT%TZ) $model: zoo recipe against pythae on cuda, 1 epoch, K=1000 on 1000 images"
        tb python3 bench/families_vs_pythae.py --device cuda --data-dir "$DATA" --model $model --epochs 1 \
            --samples 1000 --limit 1000 --json-out "$OUT/$model-cuda.json"
    done
    resume_checks
    host_cpu
    echo "== $(date -u +%FT%TZ) bench done"
}

variants() {
    # The zoo with other settings (ZOO_GPU_VARIANTS, ';'-separated; default --compile), 3 epochs each.
    IFS=';' read -r -a variants <<< "${ZOO_GPU_VARIANTS:---compile}"
    for args in "${variants[@]}"; do
        echo "== zoo train $args"
        tb python3 bench/epoch_time.py --device cuda --data-dir "$DATA" --epochs 3 --skip-seed --skip-pythae \
            --zoo-args="$args"
    done
}

resume_checks() {
    # Bit-exact resumption with each value of --deterministic (default "auto", off, on), 4 epochs straight
    # against 1 + resumed to 4, and two straight runs against each other; s/epoch of each mode.
    # One process per mode: torch reads the cuBLAS workspace setting once per process.
    echo "== $(date -u +%FT%TZ) resume on cuda: 4 epochs straight against 1 + resumed to 4 (and a rerun), bit for bit?"
    for mode in default off deterministic; do
        tb python3 bench/resume_check.py --device cuda --data-dir "$DATA" --modes $mode --epochs 4 --rerun
    done
}

host_cpu() {
    # A GPU machine's host CPU may have AVX-512 BF16: do bf16 autocast and the reference plugin's
    # AVX2-tuned single-channel paths win or lose on such a CPU? With ZOO_GPU_CPU_CORES (e.g. 0,1)
    # on those cores only, as on a 2-core machine.
    local rounds=${ZOO_GPU_CPU_ROUNDS:-1} pin=()
    # Pinned: as many OpenMP threads as cores named.
    [ -n "${ZOO_GPU_CPU_CORES:-}" ] && pin=(env OMP_NUM_THREADS="$(echo "$ZOO_GPU_CPU_CORES" | tr ',' '\n' | wc -l)"
                                            taskset -c "$ZOO_GPU_CPU_CORES")
    echo "== $(date -u +%FT%TZ) CPU levers on this machine's CPU (bf16, plugin fast paths), $rounds round(s)," \
        "cores ${ZOO_GPU_CPU_CORES:-all}"
    tb "${pin[@]}" python3 bench/cpu_levers.py --data-dir "$DATA" --rounds "$rounds" --only bf16 no-plugin-fast-paths
}

zoo_row() {
    # The zoo's row of an epoch_time.py run, or the run's last lines when it has none (it failed).
    local log=$1; shift
    tb python3 bench/epoch_time.py "$@" > "$log" 2>&1
    grep -E '^ +0 zoo' "$log" || tail -5 "$log"
}

startup() {
    # The first epoch with start-up (the target: under 10 s): 'zoo train --epochs 1' from the command's
    # start to its epoch 1 line, as the machine is, then with a bytecode cache
    # (PYTHONPYCACHEPREFIX, filled by one untimed run), as after an ordinary pip install.
    echo "== $(date -u +%FT%TZ) start-up: zoo train vae-conv-mnist --epochs 1 on cuda"
    echo "columns: load system epoch-s first-epoch-s test-ELBO x-seed x-pythae x-idle command-s to-epoch-1-s"
    zoo_row /tmp/startup-cold.txt --device cuda --data-dir "$DATA" --epochs 1 --skip-seed --skip-pythae
    timeout 150 python3 -X importtime -m zoo train vae-conv-mnist --device cuda --epochs 1 --data-dir "$DATA" \
        --out /tmp/startup-run --overwrite --no-progress 2> "$OUT/importtime.txt" >/dev/null \
        || echo "!! the importtime run exited $?"
    python3 - "$OUT/importtime.txt" <<'PY'
import collections, sys
# "import time: self [us] | cumulative | imported package", one line per module: self times per top package.
by_package, total = collections.Counter(), 0
for line in open(sys.argv[1]):
    parts = line.split("|")
    if line.startswith("import time:") and len(parts) == 3 and parts[0].split(":")[1].strip().isdigit():
        self_us = int(parts[0].split(":")[1])
        name = parts[2].strip()
        by_package["torch._dynamo" if name.startswith("torch._dynamo") else name.split(".")[0]] += self_us
        total += self_us
print(f"imports: {total / 1e6:.2f} s in all; by package: "
      + ", ".join(f"{name} {us / 1e6:.2f}" for name, us in by_package.most_common(8)))
PY
    echo "-- with a bytecode cache"
    (
        export PYTHONPYCACHEPREFIX="$PYCACHE"
        unset PYTHONDONTWRITEBYTECODE
        timeout 150 python3 -m zoo train vae-conv-mnist --device cuda --epochs 1 --data-dir "$DATA" \
            --out /tmp/startup-run --overwrite --no-progress >/dev/null 2>&1
        zoo_row /tmp/startup-warm.txt --device cuda --data-dir "$DATA" --epochs 1 --skip-seed --skip-pythae
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
    python3 -c "import pytest_timeout" 2>/dev/null && workers+=(--timeout 120)
    # The suite starts many 'zoo' subprocesses: with a bytecode cache only the first compiles torch's
    # modules (the image has none; see startup). Only this command sees these settings: the
    # measurements after it run as the machine is.
    env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX="$PYCACHE" ZOO_TEST_DATA="$DATA" OMP_NUM_THREADS="$threads" \
        timeout -s INT -k 30 "${ZOO_GPU_TEST_TIMEOUT:-250}" python3 -m pytest -q -p no:cacheprovider -rfEs \
        --tb=short --durations=25 --junitxml="$OUT/gpu-tests.xml" "${workers[@]}" ${ZOO_GPU_TEST_ARGS:-}
    # (SIGINT at the limit: pytest still prints its summary and writes the XML; SIGTERM loses both.)
    rc=$?
    echo "== $(date -u +%FT%TZ) tests exited $rc"
}

name=$(IFS=-; echo "${*:-all}")  # the log's name: gpu-all.log, gpu-test-startup.log, ...
{
    for mode in "${modes[@]}"; do
        case "$mode" in
            bench) ( bench ) ;;  # in a subshell: its bytecode cache stays with it
            test) tests ;;
            startup) setup; startup ;;
            resume|variants|cpu)  # parts of bench, alone (with bench's bytecode cache)
                ( cached_setup
                  case "$mode" in resume) resume_checks ;; variants) variants ;; cpu) host_cpu ;; esac ) ;;
        esac
    done
} 2>&1 | tee "$OUT/gpu-$name.log"
