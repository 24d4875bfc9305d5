#!/usr/bin/env bash
# gpu_check.sh [BUILD_DIR]: the GPU variants' whole check on a machine with a GPU, in one call
# of under 8 minutes, over binaries already built (CUDA on) in BUILD_DIR (default build/). It
# builds and installs nothing and needs no network. Steps:
#   driver     nvidia-smi: driver, GPU name, memory
#   list       aploss list: the three GPU rows built and runnable
#   tests      test_gpu (agreement, edge cases, exact fallback, shared|global boundary,
#              determinism, device_fn == fn; AP and aLRP), test_edge, test_delta, test_agreement
#              small, test_alrp fixtures/small/foot (aLRP rows incl. cuda_warp and cuda_sorted),
#              all with APL_REQUIRE_GPU=1 (a GPU row that cannot run is a failure, not a skip)
#   sanitize   compute-sanitizer memcheck, initcheck, racecheck, synccheck on small inputs,
#              each GPU variant, cuda_sorted's shared and global paths; memcheck of aLRP (with
#              grad_e) on a small input for cuda_warp and cuda_sorted
#   verify     aploss verify of the GPU variants on the exact fallback (span > 4096 delta) and on
#              either side of cuda_sorted's shared|global histogram boundary; verify --loss alrp
#              of the aLRP GPU variants (generated, exact fallback, global path)
#   determinism two runs of each GPU variant on one RetinaNet image, --grad-out files cmp'd
#   bench      aploss_bench: the batch-8 (2.1e7 elements, mid scores) GPU rows (AP, and aLRP
#              for the rows that implement it) and BM_floor_gpu, Google Benchmark JSON into
#              results/
#   huge       (if time is left) test_huge on 2^31 + 1e6 elements for the GPU variants
# Writes results/<machine>-<date>-gpucheck.log (everything printed) and
# results/<machine>-<date>-gpucheck.json (the benchmark), <machine> as bench/run.sh names it
# (cpu-<model>-gpu-<name>). Ends with each step's PASS/FAIL/SKIP; exits 1 if any step failed.
# Environment: APL_SANITIZER=path/to/compute-sanitizer; APL_GPU_CHECK_BUDGET_S (default 470).
set -u
B=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
START=$(date +%s)
BUDGET=${APL_GPU_CHECK_BUDGET_S:-470}
left() { echo $((BUDGET - ($(date +%s) - START))); }

slug() { tr 'A-Z' 'a-z' | sed -E 's/\((r|tm)\)//g; s/[^a-z0-9]+/-/g; s/^-+|-+$//g' | cut -c1-40; }
machine="cpu-$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | slug)"
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | slug || true)"
[ -z "$gpu" ] || machine="$machine-gpu-$gpu"
mkdir -p results
stem="results/$machine-$(date +%Y%m%d)-gpucheck"
LOG="$stem.log"
exec > >(tee "$LOG") 2>&1
T=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$T"' EXIT

declare -a NAMES STATUS
record() { NAMES+=("$1"); STATUS+=("$2"); echo "== $1: $2"; }
say() { echo; echo "== $* ($(($(date +%s) - START)) s)"; }
# run NAME TIMEOUT CMD...: one checked command; PASS on exit 0.
run() {
  local name=$1 limit=$2; shift 2
  say "$name: $*"
  if timeout --kill-after=10 "$limit" "$@"; then record "$name" PASS
  else local rc=$?; record "$name" "FAIL (exit $rc$([ $rc -eq 124 ] && echo ", timed out after ${limit}s"))"; fi
}

A="$B/aploss"
for f in aploss test_gpu test_edge test_delta test_agreement test_alrp aploss_bench test_huge; do
  [ -x "$B/$f" ] || { echo "gpu_check: $B/$f missing: build first (cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release && cmake --build $B)"; exit 2; }
done
echo "gpu_check: build $B, log $LOG, budget ${BUDGET}s, git $(git rev-parse --short=12 HEAD 2>/dev/null || echo '?')"
GPUS="cuda_warp cuda_sorted thrust_sorted_cuda"
ALRP_GPUS="cuda_warp cuda_sorted" # the GPU rows that implement aLRP Loss

# ---- driver, list ----
run driver 30 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
nvidia-smi 2>/dev/null | head -15
say "list"
if "$A" list >"$T/list" 2>&1; then
  cat "$T/list"
  ok=1
  for v in $GPUS; do grep -Eq "^$v +GPU .* yes " "$T/list" || { echo "list: $v is not a runnable GPU row"; ok=0; }; done
  record list "$([ $ok -eq 1 ] && echo PASS || echo FAIL)"
else cat "$T/list"; record list FAIL; fi

# ---- the GPU tests, skip is failure ----
export APL_REQUIRE_GPU=1
run test_gpu 240 "$B/test_gpu"
run test_edge 60 "$B/test_edge"
run test_delta 60 "$B/test_delta"
run agreement_small 60 "$B/test_agreement" small
run alrp_fixtures 60 "$B/test_alrp" fixtures "$ROOT/tests/cases/alrp"
run alrp_small 60 "$B/test_alrp" small
run alrp_foot 120 "$B/test_alrp" foot

# ---- inputs: small (cuda_sorted shared path), boundary sides, global path, fallback ----
# cuda_sorted's shared-memory histogram holds up to (shared memory per SM / 2 - reserved) / 12
# segments (S = 2|P|): 9642 on an H100/H200, about 4821 positives. test_gpu prints the exact
# value for this device and tests both sides exactly; here: well inside each side.
gen() { "$A" gen --logits "$T/$1_l.npy" --targets "$T/$1_t.npy" "${@:2}" >/dev/null; }
gen small --anchors 500 --classes 20 --pos-rate 0.01 --seed 1 &&
gen below --anchors 20000 --classes 1 --pos-rate 0.2 --seed 2 &&
gen above --anchors 22000 --classes 1 --pos-rate 0.26 --seed 3 &&
gen image --seed 4 &&
gen asmall --loss alrp --eloc "$T/asmall_e.npy" --anchors 500 --classes 20 --pos-rate 0.01 --seed 5 ||
  { echo "gpu_check: aploss gen failed"; exit 2; }

# ---- compute-sanitizer ----
SAN=${APL_SANITIZER:-$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)}
if [ -z "$SAN" ] || [ ! -x "$SAN" ]; then
  record sanitize "FAIL (compute-sanitizer not found: set APL_SANITIZER)"
else
  san() { # san TOOL VARIANT INPUT [RUN ARGS...]; keeps 180 s for what follows
    if [ "$(left)" -lt 180 ]; then record "sanitize $1 $2 $3" "FAIL (no time left)"; return; fi
    run "sanitize $1 $2 $3" 90 "$SAN" --tool "$1" --error-exitcode 1 --print-limit 20 \
      "$A" run --variant "$2" --logits "$T/$3_l.npy" --targets "$T/$3_t.npy" "${@:4}"
  }
  for v in $GPUS; do
    san memcheck $v small; san initcheck $v small
    san racecheck $v small; san synccheck $v small
  done
  # cuda_sorted's global path (S above the shared limit) and cuda_warp at many positives.
  san memcheck cuda_sorted above; san racecheck cuda_sorted below
  san memcheck cuda_warp below
  # aLRP (its host middle, e in and grad_e out): memcheck only, on the small input.
  for v in $ALRP_GPUS; do
    san memcheck $v asmall --loss alrp --eloc "$T/asmall_e.npy" --grad-eloc-out "$T/asmall_ge.npy"
  done
fi

# ---- verify: fallback and boundary ----
VL=$(echo $GPUS | tr ' ' ',')
# delta 0.001: the generated positives span about 12, more than 4096 delta: the exact fallback.
# verify NAME ARGS...: exit 0 and every GPU variant's row (of VGPUS, default all) says pass (a
# skipped row is a failure).
verify() {
  local name=$1 vg=${VGPUS:-$GPUS}; shift
  say "$name: aploss verify $*"
  timeout --kill-after=10 90 "$A" verify "$@" --variants "sorted,$(echo $vg | tr ' ' ',')" >"$T/verify" 2>&1
  local rc=$? ok=1
  cat "$T/verify"
  [ $rc -eq 0 ] || ok=0
  for v in $vg; do grep -Eq "^$v .* pass$" "$T/verify" || { echo "$name: no passing row for $v"; ok=0; }; done
  record "$name" "$([ $ok -eq 1 ] && echo PASS || echo "FAIL (exit $rc)")"
}
verify "verify fallback" --anchors 2000 --classes 20 --pos-rate 0.05 --delta 0.001
verify "verify below boundary" --logits "$T/below_l.npy" --targets "$T/below_t.npy"
verify "verify above boundary" --logits "$T/above_l.npy" --targets "$T/above_t.npy"
# aLRP (generated e): delta 0.5; the exact fallback (cuda_sorted hands the problem to cuda_warp);
# 5671 positives, above cuda_sorted's shared-memory limit on an H100/H200 (the global path).
VGPUS=$ALRP_GPUS verify "verify alrp" --loss alrp --anchors 2000 --classes 20 --pos-rate 0.05 --delta 0.5
VGPUS=$ALRP_GPUS verify "verify alrp fallback" --loss alrp --anchors 2000 --classes 20 --pos-rate 0.05 --delta 0.001
VGPUS=$ALRP_GPUS verify "verify alrp global path" --loss alrp --anchors 22000 --classes 1 --pos-rate 0.26 --seed 3

# ---- bitwise determinism ----
for v in $GPUS; do
  say "determinism $v"
  if "$A" run --variant $v --logits "$T/image_l.npy" --targets "$T/image_t.npy" --grad-out "$T/g1.npy" &&
     "$A" run --variant $v --logits "$T/image_l.npy" --targets "$T/image_t.npy" --grad-out "$T/g2.npy" &&
     cmp "$T/g1.npy" "$T/g2.npy"; then record "determinism $v" PASS
  else record "determinism $v" FAIL; fi
done

# ---- batch-8 benchmark rows ----
say "bench (batch 8: 20951040 elements) -> $stem.json"
if [ "$(left)" -gt 60 ]; then
  if timeout --kill-after=10 $(( $(left) > 240 ? 180 : $(left) - 40 )) "$B/aploss_bench" \
       --benchmark_filter='^(BM_loss/(cuda_warp|cuda_sorted|thrust_sorted_cuda)/(ap|alrp)/elements:20951040/pos_ppm:1000/delta:1/dist:mid|BM_floor_gpu/elements:20951040)(/|$)' \
       --benchmark_repetitions=3 --benchmark_report_aggregates_only=true --benchmark_min_time=0.2 \
       --benchmark_out="$stem.json.tmp" --benchmark_out_format=json; then
    mv "$stem.json.tmp" "$stem.json"
    # Every selected row must have run: no "skipped"/"refused" error in the JSON.
    if python3 - "$stem.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rows = [b for b in d["benchmarks"] if b.get("aggregate_name") in (None, "median")]
# BM_loss/<variant>/<loss>/elements:...: keyed "<variant>/<loss>"
names = {"/".join(b.get("run_name", b["name"]).split("/")[1:3]) if b["name"].startswith("BM_loss") else "floor_gpu" for b in rows}
bad = [b["name"] + ": " + b.get("error_message", "") for b in d["benchmarks"] if b.get("error_occurred")]
for b in bad: print("bench:", b)
want = {"cuda_warp/ap", "cuda_sorted/ap", "thrust_sorted_cuda/ap", "cuda_warp/alrp", "cuda_sorted/alrp", "floor_gpu"}
print("bench: rows for", sorted(names), "; missing:", sorted(want - names))
sys.exit(1 if bad or want - names else 0)
PY
    then record bench PASS; else record bench FAIL; fi
  else record bench "FAIL (aploss_bench failed or timed out)"; rm -f "$stem.json.tmp"; fi
else record bench "SKIP (no time left)"; fi

# ---- > 2^31 elements, if time is left ----
if [ "$(left)" -gt 150 ]; then
  run huge $(( $(left) - 20 )) env APL_HUGE_TESTS=1 \
    APL_HUGE_VARIANTS=cuda_sorted,thrust_sorted_cuda,cuda_warp "$B/test_huge"
else record huge "SKIP (no time left: $(left) s)"; fi

# ---- summary ----
echo
echo "== gpu_check summary ($(($(date +%s) - START)) s, GPU: ${gpu:-none}) =="
fails=0
for i in "${!NAMES[@]}"; do
  printf '  %-40s %s\n' "${NAMES[$i]}" "${STATUS[$i]}"
  case "${STATUS[$i]}" in FAIL*) fails=$((fails + 1)) ;; esac
done
echo "log: $LOG; benchmark JSON: $stem.json (bench/convert.py --bench $stem.json)"
[ $fails -eq 0 ] && echo "gpu_check: all steps passed" || echo "gpu_check: $fails step(s) FAILED"
exit $((fails > 0))
