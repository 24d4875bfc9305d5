#!/usr/bin/env python3
"""convert.py: the one converter from benchmark JSON to the tables gnuplot and the README read.

Reads the JSON that aploss_bench wrote (Google Benchmark, --benchmark_out_format=json) and the
PyTorch baseline's JSON beside it (same stem + "-torch.json"), never console output. Writes into
the results directory:
    summary.csv          every cell: time, counters, floor fraction, or why it was not timed
    elements.dat         time vs elements (pos_ppm 1000, delta 1, mid), plus floor (and
                         floor_gpu where it was timed) and PyTorch
    pos_rate.dat         time vs positive-anchor rate at one RetinaNet image
    delta_<dist>.dat     time vs delta at one RetinaNet image, per distribution
    speedup_naive.dat    naive time / variant time vs elements
    speedup_torch.dat    PyTorch time / variant time vs elements
    floor_fraction.dat   floor time / variant time vs elements (1 = as fast as the memory floor)
                         GPU rows (and torch_cuda) against BM_floor_gpu, the device floor at
                         the same size; CPU rows against BM_floor
    plot_meta.gp         machine name, column counts, colours: what the plot scripts load
    table.md             the README table (RetinaNet batch 8), also written into ../README.md
                         between <!-- table:begin --> and <!-- table:end --> when both exist
Plain Python 3 standard library: runs with whichever python3 is first on PATH.

    python3 bench/convert.py [--bench results/X.json] [--torch results/X-torch.json]
                             [--results results] [--readme README.md]
Without --bench it takes the newest results/*.json that is not a -torch.json.
"""
import argparse
import csv
import glob
import json
import math
import os
import re
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE_IMAGE = 32736 * 80  # RetinaNet at 512x512, 80 COCO classes
BATCH8 = 8 * ONE_IMAGE
DISTS = ("early", "mid", "late")
TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
# One colour per series, the same in every plot.
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
FLOOR_COLOUR, TORCH_COLOURS = "#000000", ["#ff7f0e", "#7f7f7f"]
FLOOR_GPU_COLOUR = "#555555"
# The memory floors: BM_floor (host memory) and BM_floor_gpu (device memory, CUDA events).
FLOORS = {"BM_floor": "floor", "BM_floor_gpu": "floor_gpu"}

NAME_RE = re.compile(r"^(BM_loss|BM_floor_gpu|BM_floor)/(?:(?P<variant>[A-Za-z0-9_]+)/)?elements:(?P<elements>\d+)"
                     r"(?:/pos_ppm:(?P<ppm>\d+))?(?:/delta:(?P<delta>[0-9.eE+-]+))?"
                     r"(?:/dist:(?P<dist>[a-z]+))?")
SUFFIX_RE = re.compile(r"/(manual_time|real_time|process_time|min_time:[^/]*|repeats:\d+|"
                       r"iterations:\d+|threads:\d+)(?=/|$)")
PREDICTED_RE = re.compile(r"^skipped: predicted ([0-9.eE+-]+) s")


def load(path):
    with open(path) as f:
        return json.load(f)


def cells_from(doc):
    """{key: cell} with key (variant, elements, ppm, delta, dist); variant 'floor' for BM_floor,
    'floor_gpu' for BM_floor_gpu."""
    runs = {}
    for b in doc.get("benchmarks", []):
        rn = SUFFIX_RE.sub("", b.get("run_name") or b["name"])
        runs.setdefault(rn, []).append(b)
    cells = {}
    for rn, entries in runs.items():
        m = NAME_RE.match(rn)
        if not m:
            print("convert.py: ignoring unparseable name %r" % rn, file=sys.stderr)
            continue
        floor = m.group(1) in FLOORS
        key = (FLOORS[m.group(1)] if floor else m.group("variant"), int(m.group("elements")),
               None if floor else int(m.group("ppm")),
               None if floor else float(m.group("delta")), None if floor else m.group("dist"))
        # Medians, except for the floor: its fastest repetition ("min") where recorded.
        want = ("min", "median") if floor else ("median",)
        med = sorted((e for e in entries if e.get("run_type") == "aggregate"
                      and e.get("aggregate_name") in want and not e.get("error_occurred")),
                     key=lambda e: want.index(e["aggregate_name"]))
        ok = [e for e in entries if e.get("run_type", "iteration") == "iteration"
              and not e.get("error_occurred")]
        errs = [e for e in entries if e.get("error_occurred")]
        cell = {"name": rn, "time_ms": None, "message": "", "predicted_ms": None, "reps": 0}
        src = med[0] if med else (ok[0] if ok else None)
        if src is not None:
            unit = TO_MS[src.get("time_unit", "ns")]
            cell["stat"] = src.get("aggregate_name", "median")
            if med:
                cell["time_ms"] = src["real_time"] * unit
                cell["reps"] = src.get("repetitions", 1)
            else:
                cell["time_ms"] = statistics.median(e["real_time"] for e in ok) * unit
                cell["reps"] = len(ok)
            for k in ("positives", "valid_negatives", "loss", "loss_diff", "grad_max_rel_diff",
                      "val_elements", "val_own_input", "val_max_rel_err", "label"):
                if k in src:
                    cell[k] = src[k]
        elif errs:
            cell["message"] = errs[0].get("error_message", "error")
            p = PREDICTED_RE.match(cell["message"])
            if p:
                cell["predicted_ms"] = float(p.group(1)) * 1e3
        cells[key] = cell
    return cells


def md(s):
    """Text for a markdown table cell."""
    return s.replace("|", "\\|")


def fmt_num(x):
    return "NaN" if x is None or (isinstance(x, float) and math.isnan(x)) else "%.6g" % x


def quote(s):
    return '"%s"' % s.replace('"', "'")


def write_dat(path, xname, xs, series, comment):
    """series: list of (title, {x: value}); NaN where a series has no value at x."""
    with open(path, "w") as f:
        f.write("# %s\n# generated by bench/convert.py; NaN = not timed (see summary.csv)\n"
                % comment)
        f.write(" ".join([quote(xname)] + [quote(t) for t, _ in series]) + "\n")
        for x in xs:
            f.write(" ".join([fmt_num(x)] + [fmt_num(vals.get(x)) for _, vals in series]) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=os.path.join(ROOT, "results"))
    ap.add_argument("--bench", help="aploss_bench JSON (default: newest non-torch results/*.json)")
    ap.add_argument("--torch", help="PyTorch baseline JSON (default: <bench stem>-torch.json)")
    ap.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    a = ap.parse_args()

    if not a.bench:
        found = [p for p in glob.glob(os.path.join(a.results, "*.json"))
                 if not p.endswith("-torch.json")]
        if not found:
            print("convert.py: no results/*.json: run bench/run.sh first", file=sys.stderr)
            return 1
        a.bench = max(found, key=os.path.getmtime)
    if not a.torch:
        t = a.bench[:-len(".json")] + "-torch.json"
        a.torch = t if os.path.exists(t) else None
    bench = load(a.bench)
    ctx = bench.get("context", {})
    cells = cells_from(bench)
    torch_ctx = {}
    if a.torch:
        tdoc = load(a.torch)
        torch_ctx = tdoc.get("context", {})
        cells.update(cells_from(tdoc))
    else:
        print("convert.py: no PyTorch baseline JSON beside %s" % a.bench, file=sys.stderr)

    # Variants in table order (the context lists them), then any others, then PyTorch.
    table_variants = [v for v in ctx.get("variants", "").split(",") if v] or \
        [k.split(":", 1)[1] for k in ctx if k.startswith("variant:")]
    seen = {k[0] for k in cells}
    variants = [v for v in table_variants if v in seen]
    variants += sorted(v for v in seen if v not in variants and v not in FLOORS.values()
                       and not v.startswith("torch"))
    torches = sorted(v for v in seen if v.startswith("torch"))
    colour = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(variants)}
    colour.update({v: TORCH_COLOURS[i % 2] for i, v in enumerate(torches)})
    colour["floor"] = FLOOR_COLOUR
    colour["floor_gpu"] = FLOOR_GPU_COLOUR

    floor = {k[1]: c["time_ms"] for k, c in cells.items() if k[0] == "floor"}
    floor_gpu = {k[1]: c["time_ms"] for k, c in cells.items()
                 if k[0] == "floor_gpu" and c["time_ms"] is not None}

    def on_gpu(v):
        """GPU rows (the context says GPU), torch_cuda and the device floor."""
        return v == "floor_gpu" or ctx.get("variant:" + v, "").startswith("GPU") or \
            (v.startswith("torch") and "cuda" in v)

    def floor_for(v):
        """The floor a variant is measured against: the device floor for GPU rows."""
        return floor_gpu if on_gpu(v) else floor

    # ---- summary.csv ----
    os.makedirs(a.results, exist_ok=True)
    with open(os.path.join(a.results, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["name", "variant", "elements", "pos_ppm", "delta", "dist", "positives",
                    "valid_negatives", "time_ms", "floor_ms", "floor_fraction", "reps",
                    "validated_on_elements", "val_max_rel_err", "loss_diff_vs_ours",
                    "grad_max_rel_diff_vs_ours", "status"])
        for k in sorted(cells, key=lambda k: (k[0] not in FLOORS.values(), k[0], k[1], k[2] or 0,
                                              k[3] or 0, k[4] or "")):
            c = cells[k]
            fl = floor_for(k[0]).get(k[1])
            frac = fl / c["time_ms"] if fl and c["time_ms"] else None
            w.writerow([c["name"], k[0], k[1], k[2], k[3], k[4], c.get("positives"),
                        c.get("valid_negatives"), fmt_num(c["time_ms"]), fmt_num(fl),
                        fmt_num(frac), c["reps"], c.get("val_elements"),
                        c.get("val_max_rel_err"), c.get("loss_diff"), c.get("grad_max_rel_diff"),
                        "timed" if c["time_ms"] is not None else c["message"]])

    meta = []
    not_timed = {}  # variant -> first reason, for variants never timed anywhere

    def series_for(select, xkey, with_floor):
        """Measured series (floor, variants, torch) and predicted-only series for one slice."""
        xs, meas, pred = set(), [], []
        names = (["floor", "floor_gpu"] if with_floor else []) + variants + torches
        for v in names:
            vals, pvals = {}, {}
            for k, c in cells.items():
                if k[0] != v or not select(k):
                    continue
                x = xkey(k)
                xs.add(x)
                if c["time_ms"] is not None:
                    vals[x] = c["time_ms"]
                elif c["predicted_ms"] is not None:
                    pvals[x] = c["predicted_ms"]
                elif v not in not_timed:
                    not_timed[v] = c["message"]
            if vals:
                meas.append((v, vals))
            if pvals:
                pred.append(("%s predicted, not run (over budget)" % v, pvals, v))
        return sorted(xs), meas, pred

    def slice_dat(prefix, fname, xname, select, xkey, with_floor, comment):
        xs, meas, pred = series_for(select, xkey, with_floor)
        series = meas + [(t, vals) for t, vals, _ in pred]
        write_dat(os.path.join(a.results, fname), xname, xs, series, comment)
        cols = [colour[t] for t, _ in meas] + [colour[v] for _, _, v in pred]
        meta.append("%s_n = %d  # measured series: columns 2..%d" % (prefix, len(meas), len(meas) + 1))
        meta.append("%s_np = %d  # predicted-only series after them" % (prefix, len(pred)))
        # A trailing spare: gnuplot evaluates an empty "for" clause's options once.
        meta.append("%s_colours = %s" % (prefix, quote(" ".join(cols + ["#000000"]))))
        meta.append("%s_dash = %s" % (prefix, quote(" ".join(
            "4" if t == "floor_gpu" else "2" if t == "floor" or t.startswith("torch") else "1"
            for t, _ in meas) + " 1")))
        return xs, meas

    def el_select(k):
        return k[2] == 1000 and k[3] == 1.0 and k[4] == "mid"

    xs_el, meas_el = slice_dat("el", "elements.dat", "elements",
                               lambda k: k[0] in FLOORS.values() or el_select(k),
                               lambda k: k[1], True,
                               "time per call (ms) vs elements; pos_ppm 1000, delta 1, mid")
    xs_pr, _ = slice_dat("pr", "pos_rate.dat", "pos_rate",
              lambda k: k[0] != "floor" and k[1] == ONE_IMAGE and k[3] == 1.0 and k[4] == "mid",
              lambda k: k[2] * 1e-6, False,
              "time per call (ms) vs positive-anchor rate; 2618880 elements, delta 1, mid")
    for d in DISTS:
        slice_dat("d_" + d, "delta_%s.dat" % d, "delta",
                  lambda k, d=d: k[0] != "floor" and k[1] == ONE_IMAGE and k[2] == 1000
                  and k[4] == d, lambda k: k[3], False,
                  "time per call (ms) vs delta; 2618880 elements, pos_ppm 1000, dist %s" % d)
    for d in DISTS:  # share of valid negatives at delta 1, for the panel titles
        c = next((c for k, c in cells.items() if k[1] == ONE_IMAGE and k[2] == 1000
                  and k[3] == 1.0 and k[4] == d and c.get("valid_negatives") is not None), None)
        meta.append("d_%s_vshare = %s" % (d, quote(
            "%.3g%%" % (100.0 * c["valid_negatives"] / ONE_IMAGE) if c else "?")))
    fl_one = floor.get(ONE_IMAGE)
    meta.append("floor_one_image_ms = %s" % (fmt_num(fl_one) if fl_one else "NaN"))

    # Positives per call as x2 tics: elements slice and pos-rate slice.
    def x2tics(select, xkey):
        pos_at = {}
        for k, c in cells.items():
            if k[0] != "floor" and select(k) and c.get("positives") is not None:
                pos_at[xkey(k)] = int(c["positives"])
        return quote("(" + ", ".join("'%d' %s" % (pos_at[x], fmt_num(x)) for x in sorted(pos_at))
                     + ")")
    meta.append("el_x2tics = %s" % x2tics(el_select, lambda k: k[1]))
    # Sizes with no positive at all (small inputs at pos rate 1e-3): shaded in the plots.
    zero = sorted(k[1] for k, c in cells.items() if k[0] != "floor" and el_select(k)
                  and c.get("positives") == 0)
    more = [x for x in xs_el if zero and x > zero[-1]]
    edge = math.sqrt(zero[-1] * more[0]) if zero and more else (zero[-1] * 1.5 if zero else 0)
    meta.append("el_nopos_edge = %g  # elements below this had no positive" % edge)
    for prefix, xs in (("el", xs_el), ("pr", xs_pr)):
        meta.append("%s_xrange = %s" % (prefix, quote("[%g:%g]" % (min(xs) / 1.5, max(xs) * 1.5)
                                                      if xs else "[*:*]")))
    meta.append("pr_x2tics = %s" % x2tics(
        lambda k: k[1] == ONE_IMAGE and k[3] == 1.0 and k[4] == "mid", lambda k: k[2] * 1e-6))

    # One y range for the three delta panels.
    ys = [c["time_ms"] for k, c in cells.items() if k[0] != "floor" and k[1] == ONE_IMAGE
          and k[2] == 1000 and c["time_ms"]]
    ys += [c["predicted_ms"] for k, c in cells.items() if k[0] != "floor" and k[1] == ONE_IMAGE
           and k[2] == 1000 and c["predicted_ms"]]
    if fl_one:
        ys.append(fl_one)
    meta.append("ymin_delta = %g" % (min(ys) / 1.5 if ys else 1e-3))
    meta.append("ymax_delta = %g" % (max(ys) * 1.5 if ys else 1e4))

    # ---- speed-ups and floor fraction over the elements slice ----
    el_time = {t: vals for t, vals in meas_el}
    def ratio_series(base):
        out = []
        for v in variants + torches:
            if v == base or v not in el_time or base not in el_time:
                continue
            vals = {x: el_time[base][x] / el_time[v][x] for x in el_time[v]
                    if x in el_time[base] and el_time[v][x] > 0}
            if vals:
                out.append((v, vals))
        return out
    for prefix, base in (("sn", "naive"), ("st", torches[0] if torches else "torch_cpu")):
        ser = ratio_series(base)
        write_dat(os.path.join(a.results, "speedup_%s.dat" % ("naive" if prefix == "sn" else "torch")),
                  "elements", xs_el, ser, "speed-up = %s time / variant time; elements slice" % base)
        meta.append("%s_n = %d" % (prefix, len(ser)))
        meta.append("%s_colours = %s" % (prefix, quote(" ".join(colour[t] for t, _ in ser))))
        meta.append("%s_base = %s" % (prefix, quote(base)))
    ff = []
    for v in variants + torches:
        if v in el_time:
            fv = floor_for(v)
            vals = {x: fv[x] / el_time[v][x] for x in el_time[v] if fv.get(x)}
            if vals:
                ff.append((v, vals))
    write_dat(os.path.join(a.results, "floor_fraction.dat"), "elements", xs_el, ff,
              "floor time / variant time (1 = as fast as one read+write pass); elements slice")
    meta.append("ff_n = %d" % len(ff))
    meta.append("ff_colours = %s" % quote(" ".join(colour[t] for t, _ in ff)))

    # ---- machine, and what was not timed at all ----
    machine = ctx.get("cpu_model", "unknown CPU")
    if ctx.get("num_cpus"):
        machine += " (%s cores)" % ctx["num_cpus"]
    gpu = ctx.get("gpu", "")
    if gpu and not gpu.startswith("none"):
        machine += ", " + gpu
    date = ctx.get("date", "")[:10]
    skipped = [v for v in variants + torches if v not in {t for t, _ in meas_el}
               and all(cells[k]["time_ms"] is None for k in cells if k[0] == v)]
    def short(msg):
        for key, text in (("no CUDA device", "no CUDA device"), ("not built", "not built"),
                          ("cannot import torch", "torch not importable"),
                          ("predicted", "over the time budget"), ("refused", "REFUSED")):
            if key in msg:
                return text
        return msg[:40]
    groups = {}
    for v in skipped:
        groups.setdefault(short(not_timed.get(v, "not timed")), []).append(v)
    note = "; ".join("%s (%s)" % (", ".join(vs), why) for why, vs in groups.items())
    meta.insert(0, "machine = %s" % quote(machine))
    meta.insert(1, "run_date = %s" % quote(date))
    meta.insert(2, "not_timed = %s" % quote(("not timed: " + note) if note else ""))
    meta.insert(3, "source = %s" % quote(os.path.basename(a.bench)))
    with open(os.path.join(a.results, "plot_meta.gp"), "w") as f:
        f.write("# generated by bench/convert.py from %s; loaded by plots/*.gp\n"
                % os.path.basename(a.bench))
        f.write("\n".join(meta) + "\n")

    # ---- the README table: RetinaNet batch 8 ----
    def at_b8(v):
        return cells.get((v, BATCH8, 1000, 1.0, "mid"))
    naive_b8 = at_b8("naive")
    torch_b8 = at_b8(torches[0]) if torches else None
    fl8 = floor.get(BATCH8)
    fl8_gpu = floor_gpu.get(BATCH8)
    desc = {k.split(":", 1)[1]: val for k, val in ctx.items() if k.startswith("variant:")}
    for t in torches:
        desc[t] = "CPU | PyTorch %s | O(P*M) | the published algorithm as a PyTorch loop over " \
                  "positives (bench/torch_baseline.py, %s thread(s))" % (
                      torch_ctx.get("torch", "?"), torch_ctx.get("torch_threads", "?")) \
            if t == "torch_cpu" else "GPU | PyTorch %s | O(P*M) | the same loop on %s" % (
                torch_ctx.get("torch", "?"), torch_ctx.get("gpu", "CUDA"))

    def t_of(c):
        return c["time_ms"] if c and c["time_ms"] is not None else None

    # GPU rows: a sentence on how they are timed and their floor, only where GPU data exists.
    gpu_timed = fl8_gpu or any(on_gpu(v) and t_of(at_b8(v)) for v in variants)
    gpu_note = (" GPU rows: device-resident (inputs already on the GPU, kernels only), CUDA-event "
                "time; their fraction is against the device memory floor (the same pass as one "
                "kernel on the GPU; %s): %s ms." % (
                    "fastest run" if cells.get(("floor_gpu", BATCH8, None, None, None), {})
                    .get("stat") == "min" else "median", "%.3g" % fl8_gpu if fl8_gpu else "n/a")
                if gpu_timed else "")
    pos8 = next((int(c["positives"]) for k, c in cells.items()
                 if k[1] == BATCH8 and c.get("positives") is not None), None)
    lines = [
        "Measured on %s, %s, git %s, from `results/%s`: RetinaNet batch 8 = 8 x 32736 anchors "
        "x 80 classes = %d elements, %s positives, delta 1, `mid` scores, median of %s runs. "
        "Memory floor (read logits and targets, write the gradient once; %s): %s ms. "
        "Fraction of memory floor = floor time / variant time (1 = memory-bound).%s%s"
        % (machine, date, ctx.get("git_revision", "?"), os.path.basename(a.bench), BATCH8,
           pos8 if pos8 is not None else "?",
           max([c["reps"] for c in cells.values()] or [1]),
           "fastest run" if cells.get(("floor", BATCH8, None, None, None), {}).get("stat") == "min"
           else "median", "%.1f" % fl8 if fl8 else "n/a", gpu_note,
           " Load average when the sweep started: %s (other work on the machine inflates times)."
           % ", ".join("%.2f" % x for x in ctx["load_avg"]) if ctx.get("load_avg") else ""),
        "",
        "| variant | what it is | time at batch 8 (ms) | speed-up over naive | "
        "speed-up over PyTorch | fraction of memory floor |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for v in variants + torches:
        c = at_b8(v)
        d = desc.get(v, "").split(" | ")
        what = "%s (%s, %s)" % (d[3], d[1], d[2]) if len(d) == 4 else desc.get(v, "")
        t = t_of(c)
        if t is None:
            why = c["message"] if c else "not run at this size"
            if c and c["predicted_ms"]:
                why = "not run: predicted %.0f s > budget" % (c["predicted_ms"] / 1e3)
            elif why.startswith("skipped: no CUDA device"):
                why = "skipped: no CUDA device"
            elif "not built" in why:
                why = "skipped: not built (no CUDA toolkit at configure time)"
            lines.append("| %s | %s | %s | | | |" % (v, md(what), md(why)))
            continue
        sn = t_of(naive_b8) / t if t_of(naive_b8) else None
        st = t_of(torch_b8) / t if t_of(torch_b8) else None
        fv8 = fl8_gpu if on_gpu(v) else fl8
        lines.append("| %s | %s | %.1f | %s | %s | %s |" % (
            v, md(what), t, "%.1fx" % sn if sn else "n/a", "%.1fx" % st if st else "n/a",
            "%.3g" % (fv8 / t) if fv8 else "n/a"))
    table = "\n".join(lines) + "\n"
    with open(os.path.join(a.results, "table.md"), "w") as f:
        f.write(table)

    if os.path.exists(a.readme):
        with open(a.readme) as f:
            text = f.read()
        b, e = "<!-- table:begin -->", "<!-- table:end -->"
        i, j = text.find(b), text.find(e)
        if 0 <= i < j:
            new = text[:i + len(b)] + "\n" + table + text[j:]
            if new != text:
                with open(a.readme, "w") as f:
                    f.write(new)
                print("convert.py: updated the table in %s" % a.readme, file=sys.stderr)
    print("convert.py: %s%s -> %s" % (os.path.basename(a.bench),
                                       " + " + os.path.basename(a.torch) if a.torch else "",
                                       a.results), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
