# cli_common.sh APLOSS CASES_DIR TMPDIR (sourced by the test_cli*.sh scripts): the command under
# test, the fixture folder and a fresh scratch folder, pass/fail counters, `expect` (exit code and
# one-line message), `npy` (a .npy written by hand, no numpy needed) and `summary`.
A=$1 CASES=$2 T=$3
rm -rf "$T" && mkdir -p "$T"
pass=0 fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAILED: $*" >&2; }

# expect CODE NEEDLE CMD...: exit code CODE, and (for errors) exactly one stderr line containing
# NEEDLE.
expect() {
  local code=$1 needle=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$* -> exit $rc, want $code: $(head -c 300 "$T/err")"; return; fi
  if [ "$code" -ne 0 ]; then
    [ "$(wc -l <"$T/err")" -eq 1 ] || { bad "$*: stderr is not one line: $(cat "$T/err")"; return; }
    grep -qF -- "$needle" "$T/err" || { bad "$*: stderr '$(cat "$T/err")' lacks '$needle'"; return; }
  elif [ -n "$needle" ]; then
    grep -qF -- "$needle" "$T/out" || { bad "$*: stdout lacks '$needle'"; return; }
  fi
  ok
}

# npy NAME DESCR SHAPE PYTHON-VALUES-EXPR: writes a .npy by hand (no numpy needed).
npy() {
  python3 - "$T/$1" "$2" "$3" "$4" <<'PY'
import struct, sys
path, descr, shape, values = sys.argv[1], sys.argv[2], sys.argv[3], eval(sys.argv[4])
fmt = {'<f4': '<f', '<f8': '<d', '|i1': 'b', '<i8': '<q', '|u1': 'B', '>f4': '>f'}[descr]
hdr = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
hdr += ' ' * ((64 - (10 + len(hdr) + 1) % 64) % 64) + '\n'
with open(path, 'wb') as f:
    f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode())
    f.write(b''.join(struct.pack(fmt, v) for v in values))
PY
}

# summary NAME: the closing line, and the exit status.
summary() {
  echo "$1: $pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}
