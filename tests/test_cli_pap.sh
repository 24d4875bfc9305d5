#!/usr/bin/env bash
# test_cli_pap.sh APLOSS CASES_DIR TMPDIR: the aploss command with --loss pap as a user runs it:
# run and verify on the PAP fixtures (tests/cases/pap), the shipped parameter sets by name, top-K
# 0/all, gen with IoUs, and every bad IoU, parameter file and top-K, each expected to fail with
# one stderr line naming the file (or option), the element and why.
set -u
. "$(dirname "$0")/cli_common.sh" "$@"   # expect, npy, ok/bad, A CASES T

# The Python helper that reads .npy files without numpy (float32/float64/int8, C order).
cat >"$T/npyload.py" <<'PY'
import ast, struct
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<H', b[8:10])[0]
    h = ast.literal_eval(b[10:10 + n].decode()); d = b[10 + n:]
    fmt = {'<f4': 'f', '<f8': 'd', '|i1': 'b'}[h['descr']]
    k = struct.calcsize(fmt)
    return h, list(struct.unpack('<%d%s' % (len(d) // k, fmt), d))
PY
topk_of() { python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["topk"]))' "$1/meta.json"; }

# ---- run: every fixture, naive and sorted: the loss, both gradient files against float64 ----
for c in "$CASES"/*/; do
  c=${c%/}; k=$(topk_of "$c")
  for v in naive sorted; do
    expect 0 '"loss_fn": "pap"' "$A" run --loss pap --variant "$v" --logits "$c/logits.npy" \
      --targets "$c/targets.npy" --iou "$c/iou.npy" --params "$c/ctrl.npy" --topk "$k" \
      --grad-out "$T/g.npy" --grad-iou-out "$T/gi.npy"
    PYTHONPATH=$T python3 - "$T/out" "$c" "$T/g.npy" "$T/gi.npy" "$k" <<'PY' && ok || bad "run --loss pap $v on $c: loss or gradients off"
import json, sys
from npyload import load
o, c = json.load(open(sys.argv[1])), sys.argv[2]
m = json.load(open(c + '/meta.json'))
assert o["loss_fn"] == "pap" and o["topk"] == int(sys.argv[5]) and o["param_rows"] == 5, o
assert o["positives"] == m["positives"] and o["elements"] == m["M"], o
assert abs(o["loss"] - m["loss_f64"]) <= 1e-6, (o["loss"], m["loss_f64"])
for got, want in ((sys.argv[3], 'grad_f64.npy'), (sys.argv[4], 'grad_iou_f64.npy')):
    hg, g = load(got); hw, w = load(c + '/' + want)
    assert hg['descr'] == '<f4' and hg['shape'] == hw['shape'], (hg, hw)
    top = max(abs(x) for x in w)
    assert max(abs(a - b) for a, b in zip(g, w)) <= 1e-6 * top, want
PY
  done
done

# ---- the shipped RetinaNet set by name is the fixtures' ctrl.npy ----
R=$CASES/random
"$A" run --loss pap --variant sorted --logits "$R/logits.npy" --targets "$R/targets.npy" \
  --iou "$R/iou.npy" --params "$R/ctrl.npy" --topk 0 >"$T/a.json" 2>&1
"$A" run --loss pap --variant sorted --logits "$R/logits.npy" --targets "$R/targets.npy" \
  --iou "$R/iou.npy" --params retinanet --topk all >"$T/b.json" 2>&1
"$A" run --loss pap --variant sorted --logits "$R/logits.npy" --targets "$R/targets.npy" \
  --iou "$R/iou.npy" >"$T/c.json" 2>&1
python3 - "$T/a.json" "$T/b.json" "$T/c.json" <<'PY' && ok || bad "--params retinanet / --topk all / defaults differ from ctrl.npy / --topk 0"
import json, sys
a, b, c = (json.load(open(p)) for p in sys.argv[1:])
assert a["loss"] == b["loss"] == c["loss"] and a["topk"] == b["topk"] == 0 and c["topk"] == 100000, (a, b, c)
PY
# rpn and rcnn are other functions: another loss on the same input
for set in rpn rcnn; do
  expect 0 '"param_rows": 5' "$A" run --loss pap --variant naive --logits "$R/logits.npy" \
    --targets "$R/targets.npy" --iou "$R/iou.npy" --params "$set" --topk 0
  python3 - "$T/out" "$T/a.json" <<'PY' && ok || bad "--params $set gave RetinaNet's loss"
import json, sys
o, a = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert o["loss"] != a["loss"], (o, a)
PY
done
# a 4-row set (H1 the step) is accepted: the fixture's first four rows
PYTHONPATH=$T python3 - "$R/ctrl.npy" "$T/c4.npy" <<'PY'
import struct, sys
from npyload import load
h, v = load(sys.argv[1])
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 12), }"
hdr += ' ' * ((64 - (10 + len(hdr) + 1) % 64) % 64) + '\n'
open(sys.argv[2], 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode() + struct.pack('<48f', *v[:48]))
PY
expect 0 "variants agree with the reference" "$A" verify --loss pap --logits "$R/logits.npy" \
  --targets "$R/targets.npy" --iou "$R/iou.npy" --params "$T/c4.npy" --topk 0

# ---- verify: fixture files, and generated input with every shipped set and a top-K cut ----
for c in "$CASES"/*/; do
  c=${c%/}
  expect 0 "variants agree with the reference" "$A" verify --loss pap --logits "$c/logits.npy" \
    --targets "$c/targets.npy" --iou "$c/iou.npy" --params "$c/ctrl.npy" --topk "$(topk_of "$c")"
done
for set in retinanet rpn rcnn; do
  expect 0 "variants agree with the reference" "$A" verify --loss pap --params "$set" \
    --anchors 1000 --classes 10 --pos-rate 0.03 --dist late --topk 2000
done
expect 0 "topk 0 (every valid entry ranked)" "$A" verify --loss pap --anchors 500 --classes 8 \
  --pos-rate 0.02 --topk 0

# ---- gen writes the IoUs: one float32 per positive, in [0, 1); verify takes them back ----
expect 0 "" "$A" gen --loss pap --logits "$T/l.npy" --targets "$T/t.npy" --iou "$T/i.npy" \
  --anchors 200 --classes 5 --pos-rate 0.1 --seed 3
PYTHONPATH=$T python3 - "$T/t.npy" "$T/i.npy" <<'PY' && ok || bad "gen --loss pap: IoUs do not match the positives"
import sys
from npyload import load
_, t = load(sys.argv[1]); h, i = load(sys.argv[2])
assert h['descr'] == '<f4' and len(i) == sum(1 for x in t if x == 1) > 0, (h, len(i))
assert all(0 <= x < 1 for x in i) and len(set(i)) > 1
PY
expect 0 "variants agree with the reference" "$A" verify --loss pap --logits "$T/l.npy" \
  --targets "$T/t.npy" --iou "$T/i.npy" --topk 50

# ---- bad IoUs: refused with the file, the element and why ----
L=$CASES/ties/logits.npy TG=$CASES/ties/targets.npy I=$CASES/ties/iou.npy   # 5 positives
npy i4.npy '<f4' '(4,)' '[0.1, 0.2, 0.3, 0.4]'
npy ibig.npy '<f4' '(5,)' '[0.1, 1.5, 0.2, 0.3, 0.4]'
npy ineg.npy '<f8' '(5,)' '[0.1, 0.2, 0.3, 0.4, -0.25]'
npy inan.npy '<f4' '(5,)' '[0.1, 0.2, float("nan"), 0.3, 0.4]'
npy iinf.npy '<f8' '(5,)' '[float("inf"), 0.2, 0.1, 0.3, 0.4]'
npy iint.npy '<i8' '(5,)' '[0, 1, 0, 1, 0]'
RUN=(run --loss pap --variant sorted --logits "$L" --targets "$TG")
expect 1 "$T/i4.npy: iou has 4 values: expected one per positive (5)" "$A" "${RUN[@]}" --iou "$T/i4.npy"
expect 1 "$T/ibig.npy: iou[1] = 1.5: expected a finite value in [0, 1]" "$A" "${RUN[@]}" --iou "$T/ibig.npy"
expect 1 "$T/ineg.npy: iou[4] = -0.25: expected a finite value in [0, 1]" "$A" "${RUN[@]}" --iou "$T/ineg.npy"
expect 1 "$T/inan.npy: iou[2] = nan: expected a finite value" "$A" "${RUN[@]}" --iou "$T/inan.npy"
expect 1 "$T/iinf.npy: iou[0] = inf: expected a finite value" "$A" "${RUN[@]}" --iou "$T/iinf.npy"
expect 1 "$T/iint.npy: iou must be float32 ('<f4') or float64 ('<f8'), got '<i8'" "$A" "${RUN[@]}" --iou "$T/iint.npy"
expect 1 "$T/ibig.npy: iou[1] = 1.5" "$A" verify --loss pap --logits "$L" --targets "$TG" --iou "$T/ibig.npy"
expect 0 '"loss_fn": "pap"' "$A" "${RUN[@]}" --iou "$T/ineg.npy" --iou "$I"  # the last --iou counts

# ---- bad top-K: K < 1 (other than 0 = all), fractions, words ----
for k in -3 0.5 x 1e400 ""; do
  expect 2 "--topk '$k': expected an integer K >= 1, or 0 or all to rank every valid entry" \
    "$A" "${RUN[@]}" --iou "$I" --topk "$k"
done
expect 0 '"topk": 100000' "$A" "${RUN[@]}" --iou "$I" --topk 1e5
expect 0 '"topk": 1,' "$A" "${RUN[@]}" --iou "$I" --topk 1

# ---- bad parameter files: shape, dtype, values (apl_check_pap_params's message, with the file) ----
ROW="[0,0, .2,.1, .4,.3, .6,.5, .8,.7, 1,1]"
npy c3.npy '<f4' '(3, 12)' "$ROW * 3"
npy c11.npy '<f4' '(5, 11)' "($ROW[:11]) * 5"
npy c1d.npy '<f4' '(60,)' "$ROW * 5"
npy c64.npy '<f8' '(5, 12)' "$ROW * 5"
npy cx.npy '<f4' '(5, 12)' "$ROW * 2 + [0,0, .2,.1, .2,.3, .6,.5, .8,.7, 1,1] + $ROW * 2"
npy cy.npy '<f4' '(5, 12)' "$ROW + [0,0, .2,.1, .4,.3, .6,.05, .8,.7, 1,1] + $ROW * 3"
npy cend.npy '<f4' '(5, 12)' "$ROW * 4 + [0,0, .2,.1, .4,.3, .6,.5, .8,.7, 0.9,1]"
npy cnan.npy '<f4' '(5, 12)' "[0,0, .2,float('nan'), .4,.3, .6,.5, .8,.7, 1,1] + $ROW * 4"
RI=("${RUN[@]}" --iou "$I")
expect 1 "$T/c3.npy: pap parameters must have shape (5, 12) or (4, 12)" "$A" "${RI[@]}" --params "$T/c3.npy"
expect 1 "$T/c11.npy: pap parameters must have shape (5, 12) or (4, 12) (rows H2 I2 I3 I1 [H1], each x0 y0 .. x5 y5), got shape (5, 11)" "$A" "${RI[@]}" --params "$T/c11.npy"
expect 1 "$T/c1d.npy: pap parameters must have shape" "$A" "${RI[@]}" --params "$T/c1d.npy"
expect 1 "$T/c64.npy: pap parameters must be float32 ('<f4'), got '<f8'" "$A" "${RI[@]}" --params "$T/c64.npy"
expect 1 "$T/cx.npy: pap parameters[2] (I3): x2 = 0.2 after x1 = 0.2: the x's must be strictly increasing from 0 to 1" "$A" "${RI[@]}" --params "$T/cx.npy"
expect 1 "$T/cy.npy: pap parameters[1] (I2): y3 = 0.05 after y2 = 0.3: the y's must not decrease" "$A" "${RI[@]}" --params "$T/cy.npy"
expect 1 "$T/cend.npy: pap parameters[4] (H1): last point (0.9, 1): expected (1, 1)" "$A" "${RI[@]}" --params "$T/cend.npy"
expect 1 "$T/cnan.npy: pap parameters[0][3] (H2 y1) = nan: expected a finite value" "$A" "${RI[@]}" --params "$T/cnan.npy"
expect 1 "$T/cx.npy: pap parameters[2] (I3)" "$A" verify --loss pap --anchors 100 --params "$T/cx.npy"
expect 1 "$T/none.npy: cannot open" "$A" "${RI[@]}" --params "$T/none.npy"
expect 2 "--params 'retina': expected retinanet, rpn, rcnn or a C.npy file" "$A" "${RI[@]}" --params retina

# ---- option combinations ----
expect 2 "run: --loss pap needs --iou I.npy" "$A" "${RUN[@]}"
expect 2 "verify: --loss pap needs --iou I.npy" "$A" verify --loss pap --logits "$L" --targets "$TG"
expect 2 "gen: --loss pap needs --iou I.npy" "$A" gen --loss pap --logits "$T/x.npy" --targets "$T/y.npy"
expect 2 "run: --iou is for --loss pap only" "$A" run --variant sorted --logits "$L" --targets "$TG" --iou "$I"
expect 2 "gen: --iou is for --loss pap only" "$A" gen --logits "$T/x.npy" --targets "$T/y.npy" --iou "$T/z.npy"
expect 2 "run: --params and --topk are for --loss pap only" "$A" run --variant sorted --logits "$L" --targets "$TG" --topk 5
expect 2 "verify: --params and --topk are for --loss pap only" "$A" verify --anchors 100 --params rpn
expect 2 "run: --grad-iou-out is for --loss pap only" "$A" run --variant sorted --logits "$L" --targets "$TG" --grad-iou-out "$T/x.npy"
expect 2 "run: --delta is not used by --loss pap" "$A" "${RI[@]}" --delta 0.5
expect 2 "verify: --iou goes with --logits/--targets" "$A" verify --loss pap --iou "$I" --anchors 100
expect 1 "variant pruned does not implement loss pap" "$A" run --loss pap --variant pruned --logits "$L" --targets "$TG" --iou "$I"
[ ! -e "$T/x.npy" ] && [ ! -e "$T/z.npy" ] && ok || bad "a refused command left an output file behind"

summary test_cli_pap
