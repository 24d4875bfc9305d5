#!/usr/bin/env bash
# The README's test command: installs what is missing, builds (Release, CUDA variants when nvcc
# is present) into build/, and runs every test with CTest. GPU tests report "skipped" where no
# CUDA device is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/deps.sh cmake make gcc g++ libbenchmark-dev python3 pkgconf # pkgconf: the install test
# The Python package's tests (tests/python, CTest python_package) use Debian's torch.
bash .ci/deps.sh python3-torch python3-numpy python3-pytest
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build -j"$jobs" --output-on-failure "$@"
# Sanitizer build of the tests and bounded fuzzing, when present.
if [ -f tests/hardening.sh ]; then bash tests/hardening.sh; fi
