#!/usr/bin/env bash
# test_cli_hardening.sh APLOSS TMPDIR [ASAN]: the aploss command where memory or disk run out.
#  - Inputs larger than the memory available are refused before anything is allocated, in one
#    line that says how much is needed and how much is there (generated inputs, and files: a
#    sparse file holds a valid header and terabytes of zeros without using the disk).
#  - A --grad-out write that fails midway (file size limit: write() fails with EFBIG) or a run
#    killed midway through writing it (the same limit with SIGXFSZ left fatal) leaves no partial
#    gradient file: the destination is absent, or an existing file there is unchanged, and no
#    temporary file remains beside it.
# ASAN=ON skips the ulimit -v check (AddressSanitizer cannot run under an address-space limit).
set -u
A=$1 T=$2 ASAN=${3:-OFF}
rm -rf "$T" && mkdir -p "$T"
pass=0 fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAILED: $*" >&2; }

# expect CODE NEEDLE... -- CMD...: exit code CODE, one stderr line containing every NEEDLE.
expect() {
  local code=$1; shift
  local needles=()
  while [ "$1" != "--" ]; do needles+=("$1"); shift; done
  shift
  local t0=$SECONDS
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$* -> exit $rc, want $code: $(head -c 300 "$T/err")"; return; fi
  [ "$(wc -l <"$T/err")" -eq 1 ] || { bad "$*: stderr is not one line: $(cat "$T/err")"; return; }
  for n in "${needles[@]}"; do
    grep -qF -- "$n" "$T/err" || { bad "$*: stderr '$(cat "$T/err")' lacks '$n'"; return; }
  done
  [ $((SECONDS - t0)) -le 10 ] || { bad "$*: took $((SECONDS - t0)) s, not 'fast'"; return; }
  ok
}

# sparse_npy PATH DESCR COUNT ITEMSIZE: a valid header, then COUNT*ITEMSIZE bytes of zeros that
# take no disk space. Fails (returns 1) where the filesystem cannot hold a file that large.
sparse_npy() {
  python3 - "$@" <<'PY'
import os, struct, sys
path, descr, count, item = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
hdr = "{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }" % (descr, count)
hdr += ' ' * ((64 - (10 + len(hdr) + 1) % 64) % 64) + '\n'
with open(path, 'wb') as f:
    f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode())
try:
    os.truncate(path, 10 + len(hdr) + count * item)
except OSError as e:
    os.unlink(path)
    sys.exit('cannot make a sparse file of %d bytes: %s' % (count * item, e))
PY
}

tmp_files() { find "$T" -name '*.tmp.*' | tr '\n' ' '; }

# ---- refused up front: generated inputs ----
NEED=("needs" "GB but only" "GB is available")
expect 1 "verify: batch 100000 x anchors 32736 x classes 80" "${NEED[@]}" -- "$A" verify --batch 100000
expect 1 "gen: batch 100000" "${NEED[@]}" -- "$A" gen --batch 100000 --logits "$T/gl.npy" --targets "$T/gt.npy"
[ ! -e "$T/gl.npy" ] && [ ! -e "$T/gt.npy" ] && ok || bad "a refused gen wrote files"

# ---- refused up front: files (a 1 TB logits file of zeros, valid and sparse) ----
if sparse_npy "$T/huge_l.npy" '<f4' 250000000000 4 && sparse_npy "$T/huge_t.npy" '|i1' 250000000000 1; then
  expect 1 "run: the input (about 250000000" "${NEED[@]}" -- \
    "$A" run --variant sorted --logits "$T/huge_l.npy" --targets "$T/huge_t.npy" --grad-out "$T/huge_g.npy"
  expect 1 "verify: the input" "${NEED[@]}" -- "$A" verify --logits "$T/huge_l.npy" --targets "$T/huge_t.npy"
  [ ! -e "$T/huge_g.npy" ] && ok || bad "a refused run wrote its gradient"
  rm -f "$T/huge_l.npy" "$T/huge_t.npy"
else
  echo "test_cli_hardening: no 1 TB sparse file here: file checks against MemAvailable skipped"
fi

# ---- refused up front under an address-space limit (ulimit -v) ----
if [ "$ASAN" != "ON" ]; then
  sparse_npy "$T/mid_l.npy" '<f4' 100000000 4 && sparse_npy "$T/mid_t.npy" '|i1' 100000000 1 || bad "sparse files"
  expect 1 "run: the input (about 100000" "needs 0.90 GB" "ulimit -v" -- \
    bash -c 'ulimit -v 400000 && exec "$0" "$@"' "$A" run --variant sorted --logits "$T/mid_l.npy" --targets "$T/mid_t.npy"
  expect 1 "verify: batch 10 x" "needs 0.45 GB" "ulimit -v" -- \
    bash -c 'ulimit -v 300000 && exec "$0" "$@"' "$A" verify --batch 10
  rm -f "$T/mid_l.npy" "$T/mid_t.npy"
else
  echo "test_cli_hardening: ASan build: ulimit -v checks skipped"
fi

# ---- nothing lost: a gradient write that fails midway ----
"$A" gen --logits "$T/l.npy" --targets "$T/t.npy" --anchors 10000 --classes 100 --seed 3 2>/dev/null || bad "gen"
R=(run --variant sorted --logits "$T/l.npy" --targets "$T/t.npy")
# 4 MB of gradient against a 1 MB file size limit; SIGXFSZ ignored, so write() fails with EFBIG.
expect 1 "$T/g.npy" "File too large" -- bash -c 'trap "" XFSZ; ulimit -f 1024 && exec "$0" "$@"' "$A" "${R[@]}" --grad-out "$T/g.npy"
[ ! -e "$T/g.npy" ] && ok || bad "a failed write left $T/g.npy"
[ -z "$(tmp_files)" ] && ok || bad "a failed write left temporary files: $(tmp_files)"
# The same onto an existing gradient file: it stays as it was.
"$A" "${R[@]}" --grad-out "$T/keep.npy" >/dev/null || bad "run --grad-out"
cp "$T/keep.npy" "$T/keep.orig"
expect 1 "$T/keep.npy" "File too large" -- bash -c 'trap "" XFSZ; ulimit -f 1024 && exec "$0" "$@"' "$A" "${R[@]}" --grad-out "$T/keep.npy"
cmp -s "$T/keep.npy" "$T/keep.orig" && ok || bad "a failed write changed the existing $T/keep.npy"
[ -z "$(tmp_files)" ] && ok || bad "a failed write left temporary files: $(tmp_files)"

# ---- nothing lost: a run killed midway through writing (SIGXFSZ, fatal by default) ----
rm -f "$T/killed.npy"
{ bash -c 'trap - XFSZ; ulimit -c 0; ulimit -f 1024 && exec "$0" "$@"' "$A" "${R[@]}" --grad-out "$T/killed.npy"; } >/dev/null 2>&1
rc=$?
[ "$rc" -gt 128 ] && ok || bad "the run was not killed by SIGXFSZ (exit $rc)"
[ ! -e "$T/killed.npy" ] && ok || bad "a run killed while writing left $T/killed.npy"
{ bash -c 'trap - XFSZ; ulimit -c 0; ulimit -f 1024 && exec "$0" "$@"' "$A" "${R[@]}" --grad-out "$T/keep.npy"; } >/dev/null 2>&1
cmp -s "$T/keep.npy" "$T/keep.orig" && ok || bad "a run killed while writing changed the existing $T/keep.npy"
left=$(tmp_files)
[ -z "$left" ] && ok || bad "a run killed while writing left a partial temporary file: $left ($(du -b $left | awk '{print $1}' | tr '\n' ' ')bytes)"

echo "test_cli_hardening: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
