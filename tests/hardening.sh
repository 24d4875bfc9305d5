#!/usr/bin/env bash
# hardening.sh: the hardening steps of CI (issue 6), run by tests/run.sh after the main suite.
#  1. sanitizers: the whole test suite built with clang and
#     -fsanitize=address,undefined -fno-sanitize-recover=all (CUDA and benchmarks off) into
#     build-asan/, run with `ctest -LE large`: the three agreement runs on 2.1e7 elements
#     (label `large`) are left out, everything else runs, the fuzz corpus replays included.
#  2. fuzzing: the libFuzzer targets (tests/fuzz/) built with the same sanitizers into
#     build-fuzz/, each fuzzed for APL_FUZZ_SECONDS (default 60) from its seed corpus.
# Every part runs even if one before it failed; the exit status is non-zero if any failed. The
# last lines say how long each part took. Clang and its runtimes come from Debian's packages.
set -uo pipefail
cd "$(dirname "$0")/.."
fuzz_secs=${APL_FUZZ_SECONDS:-60}
asan_dir=${APL_ASAN_BUILD:-build-asan}
fuzz_dir=${APL_FUZZ_BUILD:-build-fuzz}
jobs=$(nproc)
report=()
failed=0

# part NAME CMD...: runs CMD, records its time and outcome.
part() {
  local name=$1; shift
  echo "==== hardening: $name"
  local t0=$EPOCHREALTIME status=ok
  "$@" || { status=FAILED; failed=1; }
  report+=("$(awk -v n="$name" -v t="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" \
    -v s="$status" 'BEGIN { printf "  %-34s %7.1f s  %s", n, t, s }')")
}

# Debian's clang, then the runtimes (libFuzzer, ASan, UBSan) and llvm-symbolizer of its version.
deps() {
  bash .ci/deps.sh clang python3 cmake make || return 1
  local v; v=$(clang -dumpversion | cut -d. -f1)
  bash .ci/deps.sh "libclang-rt-$v-dev" "llvm-$v"
}

# The sanitizers' options: a failing malloc returns NULL (the code under test handles that; ASan
# would otherwise abort on a huge request), leaks are reported, UB stops with a stack trace.
sanitizer_env() {
  export ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export LSAN_OPTIONS=suppressions=$PWD/tests/lsan_suppressions.txt:print_suppressions=0
  local sym; sym=$(command -v llvm-symbolizer || ls /usr/bin/llvm-symbolizer-* 2>/dev/null | tail -1)
  [ -n "$sym" ] && export ASAN_SYMBOLIZER_PATH=$sym
}

SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
# Third-party code the sanitizers leave alone, each entry with its reason: see the file.
IGNORE="-fsanitize-ignorelist=$PWD/tests/fuzz/sanitizer_ignorelist.txt"

configure() { # DIR EXTRA_C_FLAGS CMAKE_ARGS...
  # -Wno-pass-failed: clang notes every '#pragma omp simd' loop the sanitizers keep it from
  # vectorising; that is expected here and drowns the build log.
  local dir=$1 flags="$2 -Wno-pass-failed"; shift 2
  CC=clang CXX=clang++ cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DAPL_CUDA=OFF -DAPL_BENCH=OFF "-DCMAKE_C_FLAGS=$flags" "-DCMAKE_CXX_FLAGS=$flags $IGNORE" \
    "-DCMAKE_EXE_LINKER_FLAGS=$SAN" "$@" >/dev/null
}

asan_build() {
  configure "$asan_dir" "$SAN" -DAPL_FUZZ=OFF && cmake --build "$asan_dir" -j"$jobs"
}

asan_tests() {
  sanitizer_env
  # LeakSanitizer needs ptrace-like access some containers deny: say so and go on without it.
  if ASAN_OPTIONS=detect_leaks=1 "$asan_dir/aploss" list 2>&1 >/dev/null |
      grep -q "LeakSanitizer has encountered a fatal error"; then
    echo "hardening: LeakSanitizer cannot run here: leak detection off"
    export ASAN_OPTIONS=${ASAN_OPTIONS/detect_leaks=1/detect_leaks=0}
  fi
  # python_package loads libaploss.so into an uninstrumented python, which an instrumented
  # library cannot be (unresolved sanitizer runtime symbols): it runs in the plain build only.
  echo "hardening: python_package skipped here (runs in the plain build)"
  ctest --test-dir "$asan_dir" -j"$jobs" -LE large -E '^python_package$' --output-on-failure \
    --timeout 1800
}

fuzz_build() {
  configure "$fuzz_dir" "$SAN -fsanitize=fuzzer-no-link" -DAPL_FUZZ=ON &&
    cmake --build "$fuzz_dir" -j"$jobs" --target fuzz_npy fuzz_inputs
}

fuzz_run() {
  bash tests/fuzz/run.sh "$fuzz_dir" "$fuzz_secs"
}

part "install clang, sanitizer runtimes" deps
part "sanitizers: build ($asan_dir)" asan_build
part "sanitizers: ctest -LE large" asan_tests
part "fuzzers: build ($fuzz_dir)" fuzz_build
part "fuzzers: ${fuzz_secs} s per target" fuzz_run

echo "==== hardening: summary"
printf '%s\n' "${report[@]}"
[ "$failed" -eq 0 ] && echo "hardening: all parts passed" || echo "hardening: FAILED"
exit "$failed"
