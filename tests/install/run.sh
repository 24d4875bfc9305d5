#!/usr/bin/env bash
# run.sh MODE CMAKE BUILD_DIR WORK_DIR CC C_FLAGS LINK_FLAGS GENERATOR
# Installs BUILD_DIR into an empty WORK_DIR/prefix (cmake --install), then builds and runs
# tests/install/main.c against it as an outside user would:
#   MODE cmake:     this folder's CMakeLists.txt, find_package(aploss), aploss::aploss (shared)
#                   and aploss::aploss_static
#   MODE pkgconfig: cc main.c $(pkg-config --cflags --libs aploss), and the same with --static
# Each program exits 0 only if `sorted` agrees with the reference. C_FLAGS and LINK_FLAGS are
# the build's own (a sanitizer build's library needs its runtime in the program too).
set -euo pipefail
mode=$1 cmake=$2 build=$3 work=$4 cc=$5 cflags=$6 ldflags=$7 generator=$8
here=$(cd "$(dirname "$0")" && pwd)
# A sanitizer build's library holds C++ (Thrust) objects with UBSan's vptr checks: a C program
# linked by clang must then ask for the C++ half of the sanitizer runtime too.
if [[ " $ldflags " == *" -fsanitize="* ]] && "$cc" --version 2>/dev/null | grep -q clang; then
  ldflags="$ldflags -fsanitize-link-c++-runtime -lstdc++"
fi
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log"
# Where the libraries went (lib or lib64, as GNUInstallDirs chose).
libdir=$(dirname "$(find "$prefix" -name libaploss.a | head -1)")
[ -f "$libdir/libaploss.a" ] && [ -e "$libdir/libaploss.so" ] ||
  { echo "FAIL: libaploss.a / libaploss.so not installed under $prefix"; exit 1; }

# No program built for libaploss.so should need OpenMP or the CUDA runtime itself: those are the
# library's private dependencies.
check_needed() {
  command -v readelf >/dev/null || return 0
  if readelf -d "$1" | grep -E "NEEDED.*(libgomp|libomp|libcudart)"; then
    echo "FAIL: $1 links a private dependency of libaploss.so directly"; exit 1
  fi
}

run() { # NAME PROGRAM
  echo "== $1"
  "$2" || { echo "FAIL: $1"; exit 1; }
}

case $mode in
cmake)
  "$cmake" -S "$here" -B "$work/build" -G "$generator" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$ldflags" \
    >"$work/configure.log" || { cat "$work/configure.log"; exit 1; }
  "$cmake" --build "$work/build"
  check_needed "$work/build/uses_shared"
  run "find_package(aploss), aploss::aploss" "$work/build/uses_shared"
  run "find_package(aploss), aploss::aploss_static" "$work/build/uses_static"
  ;;
pkgconfig)
  if ! command -v pkg-config >/dev/null; then
    echo "skipped: pkg-config not installed (bash .ci/deps.sh pkgconf)"; exit 77
  fi
  export PKG_CONFIG_PATH=$libdir/pkgconfig
  echo "aploss.pc: $(pkg-config --cflags --libs aploss) | --static: $(pkg-config --static --libs aploss)"
  # Shared: the run finds libaploss.so through the rpath a user would give (or LD_LIBRARY_PATH).
  # shellcheck disable=SC2046,SC2086
  "$cc" $cflags "$here/main.c" -o "$work/uses_shared" $(pkg-config --cflags --libs aploss) \
    -Wl,-rpath,"$(pkg-config --variable=libdir aploss)" $ldflags
  check_needed "$work/uses_shared"
  run "cc \$(pkg-config --cflags --libs aploss)" "$work/uses_shared"
  # Static: the archive by name (beside the .so, -laploss would pick the .so), plus Libs.private.
  # shellcheck disable=SC2046,SC2086
  "$cc" $cflags "$here/main.c" -o "$work/uses_static" $(pkg-config --cflags aploss) \
    $(pkg-config --static --libs aploss | sed 's/-laploss\b/-l:libaploss.a/') $ldflags
  if command -v readelf >/dev/null && readelf -d "$work/uses_static" | grep -q "NEEDED.*libaploss"; then
    echo "FAIL: the --static program still needs libaploss.so"; exit 1
  fi
  run "cc \$(pkg-config --static --libs aploss), libaploss.a" "$work/uses_static"
  ;;
*) echo "usage: run.sh cmake|pkgconfig CMAKE BUILD_DIR WORK_DIR CC C_FLAGS LINK_FLAGS GENERATOR"; exit 2 ;;
esac
echo "install test ($mode): pass"
