#!/usr/bin/env bash
# test_cli_alrp.sh APLOSS CASES_DIR TMPDIR: the aploss command with --loss alrp as a user runs it:
# run and verify on the aLRP fixtures (tests/cases/alrp), gen with e, and every bad e, each
# expected to fail with one stderr line naming the file, the element and why.
set -u
. "$(dirname "$0")/cli_common.sh" "$@"   # expect, npy, ok/bad, A CASES T

F=$CASES/foot L=$CASES/foot/logits.npy TG=$CASES/foot/targets.npy E=$CASES/foot/eloc.npy
variants=$("$A" list | awk '$2 == "CPU" && $4 == "yes" {print $1}')

# ---- run: JSON with loss_cls, loss_loc, loss = loss_cls, both gradients written ----
ran=0
for v in $variants; do
  "$A" run --loss alrp --variant "$v" --logits "$L" --targets "$TG" --eloc "$E" >/dev/null 2>&1 || continue
  ran=$((ran + 1))
  expect 0 "\"loss_cls\"" "$A" run --loss alrp --variant "$v" --logits "$L" --targets "$TG" --eloc "$E" \
    --delta 1 --grad-out "$T/g_$v.npy" --grad-eloc-out "$T/ge_$v.npy"
  python3 - "$T/out" "$F/meta.json" "$T/ge_$v.npy" <<'PY' && ok || bad "run --loss alrp $v: JSON or grad_e file wrong"
import json, struct, sys
o, m = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
need = ["variant", "loss", "loss_cls", "loss_loc", "positives", "valid_negatives", "elements", "delta", "seconds"]
assert all(k in o for k in need), o
assert o["loss"] == o["loss_cls"] and o["positives"] == m["positives"] and o["elements"] == m["M"]
assert abs(o["loss_cls"] - m["loss_cls_f64"]) <= 1e-6 and abs(o["loss_loc"] - m["loss_loc_f64"]) <= 1e-6
b = open(sys.argv[3], 'rb').read()
assert b[:6] == b'\x93NUMPY' and "'shape': (4,)" in b[10:10 + struct.unpack('<H', b[8:10])[0]].decode()
PY
done
[ "$ran" -ge 2 ] && ok || bad "fewer than two CPU variants ran --loss alrp ($ran)"

# ---- verify: fixture files and generated input ----
for c in "$CASES"/*/; do
  d=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["delta"])' "$c/meta.json")
  expect 0 "variants agree with the reference" "$A" verify --loss alrp --logits "$c/logits.npy" \
    --targets "$c/targets.npy" --eloc "$c/eloc.npy" --delta "$d"
done
expect 0 "variants agree with the reference" "$A" verify --loss alrp --anchors 1000 --classes 10 \
  --pos-rate 0.03 --dist late --delta 0.5

# ---- the GPU rows that implement aLRP are verify rows: "pass" where a GPU runs them, a visible
# skip where none is (no device, or built without CUDA), never "does not implement loss alrp" ----
"$A" verify --loss alrp --anchors 1000 --classes 10 --pos-rate 0.03 \
  --variants sorted,cuda_warp,cuda_sorted >"$T/vgpu" 2>&1
for v in cuda_warp cuda_sorted; do
  grep -Eq "^$v +.*( pass| skipped: no CUDA device| skipped: $v: not built)" "$T/vgpu" && ok ||
    bad "verify --loss alrp: no pass or visible no-GPU skip for $v: $(grep "^$v" "$T/vgpu")"
done

# ---- gen writes e: one float32 per positive, in [0, 2) ----
expect 0 "" "$A" gen --loss alrp --logits "$T/l.npy" --targets "$T/t.npy" --eloc "$T/e.npy" \
  --anchors 200 --classes 5 --pos-rate 0.1 --seed 3
python3 - "$T/t.npy" "$T/e.npy" <<'PY' && ok || bad "gen --loss alrp: e does not match the positives"
import struct, sys
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<H', b[8:10])[0]
    return b[10:10 + n].decode(), b[10 + n:]
th, td = load(sys.argv[1]); eh, ed = load(sys.argv[2])
np_ = sum(1 for x in struct.unpack('%db' % len(td), td) if x == 1)
e = struct.unpack('<%df' % (len(ed) // 4), ed)
assert "'<f4'" in eh and len(e) == np_ > 0 and all(0 <= x < 2 for x in e), (eh, len(e), np_)
PY
expect 0 "variants agree with the reference" "$A" verify --loss alrp --logits "$T/l.npy" \
  --targets "$T/t.npy" --eloc "$T/e.npy"

# ---- e as float64 is accepted, with the same losses ----
npy e64.npy '<f8' '(4,)' "$(python3 -c 'import struct,sys; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<H",b[8:10])[0]; print(list(struct.unpack("<4f", b[10+n:])))' "$E")"
expect 0 "\"loss_cls\"" "$A" run --loss alrp --variant pruned --logits "$L" --targets "$TG" --eloc "$T/e64.npy"

# ---- bad e: refused with the file, the element and why ----
npy e3.npy '<f4' '(3,)' '[0.1, 0.2, 0.3]'
npy eneg.npy '<f4' '(4,)' '[0.1, -0.5, 0.2, 0.3]'
npy enan.npy '<f4' '(4,)' '[0.1, 0.2, float("nan"), 0.3]'
npy einf.npy '<f8' '(4,)' '[float("inf"), 0.2, 0.1, 0.3]'
npy ebig.npy '<f8' '(4,)' '[0.1, 0.2, 0.3, 1e300]'
npy eint.npy '<i8' '(4,)' '[0, 1, 0, 1]'
npy e2d.npy '<f4' '(2, 2)' '[0.1, 0.2, 0.3, 0.4]'
R=(run --loss alrp --variant pruned --logits "$L" --targets "$TG")
expect 1 "$T/e3.npy: eloc has 3 values: expected one per positive (4)" "$A" "${R[@]}" --eloc "$T/e3.npy"
expect 1 "$T/eneg.npy: eloc[1] = -0.5: expected a finite value >= 0" "$A" "${R[@]}" --eloc "$T/eneg.npy"
expect 1 "$T/enan.npy: eloc[2] = nan: expected a finite value" "$A" "${R[@]}" --eloc "$T/enan.npy"
expect 1 "$T/einf.npy: eloc[0] = inf: expected a finite value" "$A" "${R[@]}" --eloc "$T/einf.npy"
expect 1 "$T/ebig.npy: eloc[3] = 1e+300: expected a finite value (within float32's range)" "$A" "${R[@]}" --eloc "$T/ebig.npy"
expect 1 "$T/eint.npy: eloc must be float32 ('<f4') or float64 ('<f8'), got '<i8'" "$A" "${R[@]}" --eloc "$T/eint.npy"
expect 1 "$T/e2d.npy: eloc must be 1-D (one value per positive), got shape (2, 2)" "$A" "${R[@]}" --eloc "$T/e2d.npy"
expect 1 "$T/missing.npy: cannot open" "$A" "${R[@]}" --eloc "$T/missing.npy"
expect 1 "$T/eneg.npy: eloc[1] = -0.5" "$A" verify --loss alrp --logits "$L" --targets "$TG" --eloc "$T/eneg.npy"

# ---- option combinations ----
expect 2 "--loss alrp needs --eloc" "$A" "${R[@]}"
expect 2 "--loss alrp needs --eloc" "$A" verify --loss alrp --logits "$L" --targets "$TG"
expect 2 "--loss alrp needs --eloc" "$A" gen --loss alrp --logits "$T/x.npy" --targets "$T/y.npy"
expect 2 "--eloc is for --loss alrp only" "$A" run --variant pruned --logits "$L" --targets "$TG" --eloc "$E"
expect 2 "--grad-eloc-out is for --loss alrp only" "$A" run --variant pruned --logits "$L" --targets "$TG" --grad-eloc-out "$T/x.npy"
expect 2 "--eloc goes with --logits/--targets" "$A" verify --loss alrp --eloc "$E" --anchors 100
expect 2 "--loss: loss 'lrp': expected ap, alrp or pap" "$A" "${R[@]}" --loss lrp
[ ! -e "$T/x.npy" ] && ok || bad "a refused command left $T/x.npy behind"

summary test_cli_alrp
