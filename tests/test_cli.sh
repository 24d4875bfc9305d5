#!/usr/bin/env bash
# test_cli.sh APLOSS CASES_DIR TMPDIR: the aploss command as a user runs it: help, list, gen,
# run, verify (generated inputs and every SPEC fixture), and every bad input, each expected to
# fail with a one-line message that names the problem and a non-zero exit.
set -u
. "$(dirname "$0")/cli_common.sh" "$@"   # expect, npy, ok/bad, A CASES T

# ---- help and usage ----
expect 0 "usage: aploss" "$A" --help
for c in list gen run verify; do expect 0 "usage: aploss $c" "$A" $c --help; done
expect 2 "unknown command 'frobnicate'" "$A" frobnicate
expect 2 "unknown option '--bogus'" "$A" run --bogus
expect 2 "unknown option '--nope'" "$A" verify --nope 3
expect 2 "needs a value" "$A" run --delta
expect 2 "unexpected argument 'extra'" "$A" list extra

# ---- list ----
expect 0 "sorted" "$A" list
for v in naive pruned sorted; do
  grep -Eq "^$v +CPU .* yes " "$T/out" && ok || bad "list: $v not shown as a runnable CPU variant"
done

# ---- gen, run ----
expect 0 "" "$A" gen --logits "$T/l.npy" --targets "$T/t.npy" --anchors 500 --classes 20 --pos-rate 0.01 --dist mid --seed 7
expect 2 "pos-rate = 2" "$A" gen --logits "$T/x.npy" --targets "$T/y.npy" --pos-rate 2
expect 2 "--dist: unknown distribution 'middle'" "$A" gen --logits "$T/x.npy" --targets "$T/y.npy" --dist middle
expect 2 "--batch '-3'" "$A" gen --logits "$T/x.npy" --targets "$T/y.npy" --batch -3
expect 2 "--logits and --targets are required" "$A" gen --logits "$T/x.npy"
[ ! -e "$T/x.npy" ] && ok || bad "a refused gen left $T/x.npy behind"
losses=()
for v in naive pruned sorted; do
  expect 0 "\"variant\": \"$v\"" "$A" run --variant $v --logits "$T/l.npy" --targets "$T/t.npy" --delta 0.5 --grad-out "$T/g_$v.npy"
  python3 - "$T/out" <<'PY' && ok || bad "run $v: JSON lacks a field"
import json, sys
o = json.load(open(sys.argv[1]))
need = ["variant", "loss", "positives", "valid_negatives", "elements", "delta", "seconds"]
sys.exit(0 if all(k in o for k in need) and o["elements"] == 10000 and o["delta"] == 0.5 else 1)
PY
  losses+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["loss"])' "$T/out")")
  [ -s "$T/g_$v.npy" ] && ok || bad "run $v: no gradient file"
done
python3 -c 'import sys; l=[float(x) for x in sys.argv[1:]]; sys.exit(0 if max(l)-min(l) <= 1e-6 and l[0] > 0 else 1)' "${losses[@]}" \
  && ok || bad "run: losses differ: ${losses[*]}"
cmp -s <(head -c 128 "$T/g_sorted.npy") <(head -c 128 "$T/l.npy") && ok || bad "gradient header differs from logits header"

# ---- verify ----
expect 0 "variants agree with the reference" "$A" verify --anchors 300 --classes 10 --pos-rate 0.05 --dist early --delta 0.25 --variants naive,pruned,sorted
expect 0 "variants agree with the reference" "$A" verify --logits "$T/l.npy" --targets "$T/t.npy" --delta 0.5
for d in "$CASES"/*/; do
  delta=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["delta"])' "$d/expected.json")
  expect 0 "agree with the reference" "$A" verify --logits "$d/logits.npy" --targets "$d/targets.npy" --delta "$delta"
done
expect 2 "unknown variant 'fastest'" "$A" verify --variants sorted,fastest
expect 2 "give both --logits and --targets" "$A" verify --logits "$T/l.npy"
expect 2 "cannot be combined" "$A" verify --logits "$T/l.npy" --targets "$T/t.npy" --batch 2

# ---- bad arguments ----
R=(run --variant sorted --logits "$T/l.npy" --targets "$T/t.npy")
expect 2 "--delta '0'" "$A" "${R[@]}" --delta 0
expect 2 "--delta 'nan'" "$A" "${R[@]}" --delta nan
expect 2 "--delta '-1'" "$A" "${R[@]}" --delta -1
expect 2 "--delta 'inf'" "$A" "${R[@]}" --delta inf
expect 2 "--delta 'abc'" "$A" "${R[@]}" --delta abc
# The delta range (docs/SPEC.md "Delta range"): both ends refused with the library's message,
# the ends of the range itself accepted (verify: every variant agrees with the reference).
for d in 4.9e-324 1e-45 1e-39 7.8e-31 1.3e30 1e38 1.7e308; do
  expect 2 "--delta '$d': delta = " "$A" "${R[@]}" --delta $d
  grep -qF "expected a finite value in [2^-100, 2^100]" "$T/err" && ok || bad "--delta $d: message lacks the range"
done
expect 0 "variants agree with the reference" "$A" verify --anchors 200 --classes 5 --pos-rate 0.05 --delta 7.9e-31
expect 0 "variants agree with the reference" "$A" verify --anchors 200 --classes 5 --pos-rate 0.05 --delta 1.2e30
expect 2 "unknown variant 'fast'" "$A" run --variant fast --logits "$T/l.npy" --targets "$T/t.npy"
expect 2 "are required" "$A" run --logits "$T/l.npy" --targets "$T/t.npy"
expect 1 "$T/missing.npy" "$A" run --variant sorted --logits "$T/missing.npy" --targets "$T/t.npy"

# ---- bad files: each names the file and the problem ----
npy nan.npy '<f4' '(4,)' '[0.5, float("nan"), 1.0, 2.0]'
npy inf.npy '<f4' '(4,)' '[0.5, 1.0, float("inf"), 2.0]'
npy good4.npy '<f4' '(4,)' '[0.5, 1.0, 1.5, 2.0]'
npy t4.npy '|i1' '(4,)' '[1, 0, 0, -1]'
npy t3.npy '|i1' '(4,)' '[1, 0, 3, -1]'
npy t5.npy '|i1' '(5,)' '[1, 0, 0, -1, 0]'
npy t22.npy '|i1' '(2, 2)' '[1, 0, 0, -1]'
npy tf.npy '<f8' '(4,)' '[1.0, 0.0, 0.5, -1.0]'
npy ti64.npy '<i8' '(4,)' '[1, 0, 0, -1]'
npy big.npy '>f4' '(4,)' '[0.5, 1.0, 1.5, 2.0]'
head -c 140 "$T/good4.npy" >"$T/trunc.npy"
printf 'NOTNUMPY-file-at-all' >"$T/magic.npy"
sed "s/'fortran_order': False/'fortran_order': True /" "$T/good4.npy" >"$T/fort.npy"
run() { "$A" run --variant sorted --logits "$T/$1" --targets "$T/$2"; }
expect 0 "\"positives\": 1" run good4.npy t4.npy
expect 0 "\"positives\": 1" run good4.npy ti64.npy
expect 1 "nan.npy" run nan.npy t4.npy
expect 1 "must be finite" run nan.npy t4.npy
expect 1 "inf" run inf.npy t4.npy
expect 1 "t3.npy" run good4.npy t3.npy
expect 1 "expected -1, 0 or 1" run good4.npy t3.npy
expect 1 "0.5" run good4.npy tf.npy
expect 1 "shape mismatch" run good4.npy t5.npy
expect 1 "shape mismatch" run good4.npy t22.npy
expect 1 "big-endian" run big.npy t4.npy
expect 1 "trunc.npy" run trunc.npy t4.npy
expect 1 "magic.npy" run magic.npy t4.npy
expect 1 "Fortran" run fort.npy t4.npy

# ---- output is whole or absent ----
expect 1 "$T/nodir/g.npy" "$A" "${R[@]}" --grad-out "$T/nodir/g.npy"
[ ! -e "$T/nodir" ] && ok || bad "failed --grad-out created something"
cp "$T/g_sorted.npy" "$T/keep.npy"
expect 1 "nan.npy" "$A" run --variant sorted --logits "$T/nan.npy" --targets "$T/t4.npy" --grad-out "$T/keep.npy"
cmp -s "$T/keep.npy" "$T/g_sorted.npy" && ok || bad "a failed run touched an existing --grad-out file"
ls "$T" | grep -q '\.tmp' && bad "temporary files left: $(ls "$T" | grep '\.tmp')" || ok

summary test_cli
