#!/usr/bin/env bash
# run.sh BUILD_DIR [SECONDS] [TARGET...]: fuzzes each libFuzzer target built in BUILD_DIR
# (configured with -DAPL_FUZZ=ON, see tests/hardening.sh) for SECONDS (default 60), all targets
# at once when there are cores for it. Starts from the seed corpus in tests/fuzz/corpus/<target>/
# (read only: new inputs go to BUILD_DIR/fuzz/<target>/corpus). Exits non-zero if any target
# found a crash, a hang (10 s per input), a sanitizer report or a failed FUZZ_ASSERT; the input
# is then in BUILD_DIR/fuzz/<target>/ as crash-*, timeout-* or oom-*: replay it with
#   BUILD_DIR/<target> FILE           (or <target>_replay FILE in any build)
# and, once fixed, keep it as tests/fuzz/corpus/<target>/finding-<what>.bin.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
secs=${2:-60}
shift $(($# >= 2 ? 2 : $#))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_npy fuzz_inputs)

# Allocation failures are part of what is tested (a header may promise terabytes): malloc returns
# NULL instead of ASan aborting, from 2 GB up (ASan poisons the shadow of what a huge malloc
# returns, so a few of them would otherwise grow the RSS to the limit over a long run), and
# libFuzzer's own per-malloc limit is lifted (rss_limit_mb still bounds what is really used).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1:max_allocation_size_mb=2048"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
sym=$(command -v llvm-symbolizer || ls /usr/bin/llvm-symbolizer-* 2>/dev/null | tail -1)
[ -n "$sym" ] && export ASAN_SYMBOLIZER_PATH=$sym

# One core per target: all at once where there are enough cores, one after another otherwise.
parallel=$(( $(nproc) >= ${#targets[@]} ))
declare -A rcs pids
for t in "${targets[@]}"; do
  [ -x "$build/$t" ] || { echo "fuzz: $build/$t not built (configure with -DAPL_FUZZ=ON)"; exit 1; }
  work=$build/fuzz/$t
  rm -rf "$work" && mkdir -p "$work/corpus"
  (
    cd "$work" && exec "$build/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb=4194304 -dict="$here/npy.dict" -artifact_prefix="$work/" \
      -print_final_stats=1 "$work/corpus" "$here/corpus/$t" >"$work/log" 2>&1
  ) &
  pids[$t]=$!
  if [ "$parallel" -eq 0 ]; then wait "${pids[$t]}"; rcs[$t]=$?; fi
done
if [ "$parallel" -eq 1 ]; then
  for t in "${targets[@]}"; do wait "${pids[$t]}"; rcs[$t]=$?; done
fi

fail=0
for t in "${targets[@]}"; do
  rc=${rcs[$t]}
  work=$build/fuzz/$t
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log" | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1)
  found=$(find "$work" -maxdepth 1 \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | head -5)
  if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
    fail=1
    echo "fuzz: $t: FAILED (exit $rc) after ${runs:-?} inputs; input kept: ${found:-none}"
    grep -E 'ERROR|FUZZ_ASSERT|FUZZ_EXPECT|runtime error|SUMMARY|^ +#[0-9]+ ' "$work/log" | head -40
  else
    echo "fuzz: $t: ok, ${runs:-?} inputs in ${secs} s, ${cov:-cov ?}, corpus $(ls "$work/corpus" | wc -l) new inputs"
  fi
done
exit $fail
