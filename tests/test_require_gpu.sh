#!/usr/bin/env bash
# test_require_gpu.sh TEST_GPU: the skip-is-failure switch. On a machine where the GPU rows
# cannot run (no device, or built without CUDA), plain test_gpu must skip (exit 77, "skipped: no
# CUDA device") and APL_REQUIRE_GPU=1 test_gpu must fail (exit 1) with a message that names the
# switch. Where a GPU is present this proves nothing here: it skips visibly (exit 77) and
# tests/gpu_check.sh runs the suite with the switch instead.
set -u
G=$1
out=$(APL_REQUIRE_GPU=0 "$G" --probe 2>&1); rc=$?
if [ "$rc" -eq 0 ]; then
  echo "test_require_gpu: skipped: a CUDA device is present (tests/gpu_check.sh runs test_gpu with APL_REQUIRE_GPU=1)"
  exit 77
fi
if [ "$rc" -ne 77 ]; then
  echo "FAILED: test_gpu --probe without the switch: exit $rc, want 77 (skip): $out" >&2
  exit 1
fi
echo "$out" | grep -q "skipped: no CUDA device" || { echo "FAILED: skip message: $out" >&2; exit 1; }
out=$(APL_REQUIRE_GPU=1 "$G" 2>&1); rc=$?
echo "$out"
if [ "$rc" -ne 1 ]; then
  echo "FAILED: APL_REQUIRE_GPU=1 test_gpu: exit $rc, want 1 (failure, not a skip)" >&2
  exit 1
fi
echo "$out" | grep -q "test_gpu: FAILED: APL_REQUIRE_GPU=1 but .* cannot run" ||
  { echo "FAILED: APL_REQUIRE_GPU=1 test_gpu: message lacks 'test_gpu: FAILED: APL_REQUIRE_GPU=1 but ... cannot run'" >&2; exit 1; }
echo "$out" | grep -q "skipped" && { echo "FAILED: APL_REQUIRE_GPU=1 test_gpu still says skipped" >&2; exit 1; }
echo "test_require_gpu: APL_REQUIRE_GPU=1 turns the skip into a failure"
