#!/usr/bin/env bash
# bench/run.sh: the main benchmark command. Installs what is missing (Debian/Ubuntu, apt), builds
# Release into build/, runs the sweep with Google Benchmark (aploss_bench) and the PyTorch
# baseline, stores the JSON under results/ and regenerates the tables and plots (plots/make.sh).
# The sweep (slices, thread counts, losses, budgets, repetitions) is bench/sweep.json.
#   bench/run.sh                 the default mode: up to 8 RetinaNet images, 1/2/all threads
#                                (about 10-13 minutes on 2 cores)
#   bench/run.sh --full          the full mode: adds 16 images, 1e8 elements, pos rate 0.5
#   bench/run.sh --sweep MODE    any mode of the sweep file; --sweep-file F another declaration
# Environment: APL_BUILD_DIR (default build) where to build;
#              APL_BENCH_REPS / APL_BENCH_MIN_TIME override the mode's repetitions / min_time_s;
#              APL_RESULTS (default results), APL_PLOTS_OUT (default plots), APL_README (default
#              README.md): where the JSON, the tables, the plots and the table go (a smoke run
#              can point them elsewhere).
set -euo pipefail
mode=default
sweep_file=bench/sweep.json
while [ $# -gt 0 ]; do
    case "$1" in
        --full) mode=full ;;
        --sweep) mode="${2:?--sweep needs a mode}"; shift ;;
        --sweep-file) sweep_file="${2:?--sweep-file needs a file}"; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/run.sh: unknown argument '$1' (use --full, --sweep MODE, --sweep-file F or --help)" >&2; exit 2 ;;
    esac
    shift
done
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
t_start=$(date +%s)
build="${APL_BUILD_DIR:-build}"
say() { printf '\n== bench/run.sh: %s (%ds)\n' "$*" $(( $(date +%s) - t_start )); }

# ---- 1. what is missing: build tools are required, gnuplot/numpy/torch optional ----
need=() want=()
command -v cmake > /dev/null || need+=(cmake)
command -v g++ > /dev/null || need+=(g++)
[ -f /usr/include/benchmark/benchmark.h ] || dpkg -s libbenchmark-dev > /dev/null 2>&1 || need+=(libbenchmark-dev)
command -v gnuplot > /dev/null || want+=(gnuplot-nox)
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" -c 'import numpy' 2> /dev/null || want+=(python3-numpy)
"$py" -c 'import torch' 2> /dev/null || want+=(python3-torch)
if [ ${#need[@]} -gt 0 ] || [ ${#want[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing ${need[*]} ${want[*]}"
    if command -v apt-get > /dev/null && { [ -z "$sudo" ] || command -v sudo > /dev/null; }; then
        $sudo apt-get update
        [ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${need[@]}"
        [ ${#want[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${want[@]}" ||
            echo "bench/run.sh: could not install ${want[*]}: going on without (visible below)" >&2
    elif [ ${#need[@]} -gt 0 ]; then
        echo "bench/run.sh: missing ${need[*]} and no apt-get/sudo to install them" >&2
        exit 1
    fi
fi

# ---- 2. build (Release) ----
say "configuring and building Release into $build/"
mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release > "$build/configure.log" 2>&1 ||
    { cat "$build/configure.log" >&2; exit 1; }
grep -E "aploss:|WARNING" "$build/configure.log" || true
cmake --build "$build" -j"$(nproc)" --target aploss_bench aploss-cli aploss_shared

# ---- 3. the sweep ----
slug() { tr 'A-Z' 'a-z' | sed -E 's/\((r|tm)\)//g; s/[^a-z0-9]+/-/g; s/^-+|-+$//g' | cut -c1-40; }
machine="cpu-$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | slug)"
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -1 | slug || true)"
[ -z "$gpu" ] || machine="$machine-gpu-$gpu"
results="${APL_RESULTS:-results}"
stem="$results/$machine-$(date +%Y%m%d)"
[ "$mode" = default ] || stem="$stem-$mode"
mkdir -p "$results"
say "running the $mode sweep of $sweep_file -> $stem.json"
overrides=()
[ -z "${APL_BENCH_REPS:-}" ] || overrides+=(--benchmark_repetitions="$APL_BENCH_REPS")
[ -z "${APL_BENCH_MIN_TIME:-}" ] || overrides+=(--benchmark_min_time="$APL_BENCH_MIN_TIME")
"$build/aploss_bench" --apl_sweep="$mode" --apl_sweep_file="$sweep_file" \
    --benchmark_report_aggregates_only=true ${overrides[@]+"${overrides[@]}"} \
    --benchmark_out="$stem.json.tmp" --benchmark_out_format=json
mv "$stem.json.tmp" "$stem.json"

# ---- 4. the PyTorch baseline on the same inputs (skips visibly without torch) ----
say "PyTorch baseline -> $stem-torch.json"
"$py" bench/torch_baseline.py --cli "$build/aploss" --out "$stem-torch.json" \
    --sweep "$mode" --sweep-file "$sweep_file"

# ---- 5. the PyTorch training step and the driver across processes (python/aploss over
#         $build/libaploss.so; skipped visibly without torch) ----
if "$py" -c 'import torch' 2> /dev/null; then
    say "PyTorch training step -> $stem-torch-step.json"
    APLOSS_LIBRARY="$build/libaploss.so" "$py" bench/torch_step.py --out "$stem-torch-step.json"
    say "across processes -> $stem-dist.json"
    APLOSS_LIBRARY="$build/libaploss.so" "$py" bench/dist_bench.py --out "$stem-dist.json"
else
    say "skipped: training-step and across-process benchmarks ($py cannot import torch)"
fi

# ---- 6. tables and plots from the stored JSON ----
say "tables and plots"
APL_RESULTS="$results" plots/make.sh --bench "$stem.json"
say "done: $stem.json, $stem-torch.json, $results/table.md, ${APL_PLOTS_OUT:-plots}/*.png"
