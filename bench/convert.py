#!/usr/bin/env python3
"""convert.py: the one converter from benchmark JSON to the tables gnuplot and the README read.

Reads the JSON that aploss_bench wrote (Google Benchmark, --benchmark_out_format=json) and the
PyTorch baseline's JSON beside it (same stem + "-torch.json"), never console output. Writes into
the results directory:
    summary.csv          every cell: time, counters, floor fraction, x focal, or why it was
                         not timed (skip_reason, the label field the benchmarks write)
    elements.dat         time vs elements (pos_ppm 1000, delta 1, mid), plus floor (and
                         floor_gpu where it was timed), focal and PyTorch
    pos_rate.dat         time vs positive-anchor rate at one RetinaNet image
    delta_<dist>.dat     time vs delta at one RetinaNet image, per distribution
    speedup_naive.dat    naive time / variant time vs elements
    speedup_torch.dat    PyTorch time / variant time vs elements
    floor_fraction.dat   floor time / variant time vs elements (1 = as fast as the memory floor)
                         GPU rows (and torch_cuda) against BM_floor_gpu, the device floor at
                         the same size; CPU rows against BM_floor at the same size AND thread
                         count (like for like)
    threads_<dist>.dat   thread-scaling slice: time vs threads (floor, focal, variants)
    threads_ff_<dist>.dat  the same slice: floor fraction vs threads
    plot_meta.gp         machine name, column counts, colours: what the plot scripts load
    table.md             the README table (sweep.json "table": RetinaNet batch 8, every thread
                         count), also written into ../README.md
                         between <!-- table:begin --> and <!-- table:end --> when both exist
Slices, axes and the table's cell come from the sweep declaration the run recorded in its
context (sweep_json; else bench/sweep.json), read with bench/sweep.py. Rows that were not timed
are classified by their label field skip_reason=<code>, never by message text.
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
sys.path.insert(0, os.path.join(ROOT, "bench"))
import sweep as sweepdecl  # noqa: E402  (bench/sweep.py)
TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
# One colour per series, the same in every plot.
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
FLOOR_COLOUR, TORCH_COLOURS = "#000000", ["#ff7f0e", "#7f7f7f"]
FLOOR_GPU_COLOUR = "#555555"
FLOOR_1T_COLOUR, FOCAL_COLOUR = "#999999", "#e6ab02"
# The baselines: BM_floor (host memory), BM_floor_gpu (device memory, CUDA events), BM_focal
# (sigmoid focal loss, forward + gradient). Keys use these names as the variant.
FLOORS = {"BM_floor": "floor", "BM_floor_gpu": "floor_gpu", "BM_focal": "focal"}
BASELINES = set(FLOORS.values())

# Our names (aploss_bench.cc); loss and threads are optional so older results still convert
# (they had neither: AP only, one thread). PAP rows carry topk:K after the loss (K = 0:
# untruncated); the key's loss is then "pap/topk:K", which keeps each K's rows apart.
NAME_RE = re.compile(r"^(BM_loss|BM_floor_gpu|BM_floor|BM_focal)/"
                     r"(?:(?P<variant>[A-Za-z0-9_]+)/(?:(?P<loss>ap|alrp|pap)/"
                     r"(?:topk:(?P<topk>\d+)/)?)?)?"
                     r"elements:(?P<elements>\d+)"
                     r"(?:/pos_ppm:(?P<ppm>\d+))?(?:/delta:(?P<delta>[0-9.eE+-]+))?"
                     r"(?:/dist:(?P<dist>[a-z]+))?(?:/threads:(?P<threads>\d+))?")
# Google Benchmark's own suffixes. threads:N is ours (the benchmark never calls ->Threads()).
SUFFIX_RE = re.compile(r"/(manual_time|real_time|process_time|min_time:[^/]*|repeats:\d+|"
                       r"iterations:\d+)(?=/|$)")
# Skip codes (the label's skip_reason) as the plots and the table name them.
SKIP_TEXT = {"no_device": "no CUDA device", "not_built": "not built",
             "device_error": "CUDA driver error", "no_device_fn": "no device entry point",
             "no_aux_inputs": "no aux inputs yet", "over_budget": "over the time budget",
             "no_torch": "torch not importable",
             "too_big": "dense matrices too big for memory"}


def loss_key(m):
    """A row's loss in the cell keys: ap, alrp, or pap/topk:K (older results: pap alone)."""
    loss = m.group("loss") or "ap"
    return "%s/topk:%s" % (loss, m.group("topk")) if m.group("topk") is not None else loss


def loss_title(lk):
    """pap/topk:100000 -> 'pap, top-K 1e+05'; pap/topk:0 -> 'pap, untruncated'."""
    if "/topk:" in lk:
        k = int(lk.split(":")[1])
        return "pap, untruncated" if k == 0 else "pap, top-K %g" % k
    return lk


def label_fields(label):
    """The label's key=value fields ("skip_reason=over_budget; predicted_s=31.2")."""
    out = {}
    for part in (label or "").split("; "):
        k, eq, v = part.partition("=")
        if eq and re.match(r"^[a-z_]+$", k):
            out[k] = v
    return out


def skip_text(code):
    if code.startswith("refused:"):
        return "REFUSED (%s)" % code.split(":", 1)[1]
    if code.startswith("error:"):
        return "ERROR (%s)" % code.split(":", 1)[1]
    return SKIP_TEXT.get(code, code or "not timed")


def load(path):
    with open(path) as f:
        return json.load(f)


def cells_from(doc):
    """{key: cell} with key (variant, loss, elements, ppm, delta, dist, threads); variant
    'floor', 'floor_gpu' or 'focal' for the baselines (loss, ppm, delta, dist None; threads None
    for floor_gpu and GPU rows)."""
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
        threads = int(m.group("threads")) if m.group("threads") else None
        if threads is None and m.group(1) != "BM_floor_gpu" and not any(
                "manual_time" in (e.get("run_name") or e["name"]) for e in entries):
            threads = 1  # older results, without a threads field: every CPU row ran on one
        key = (FLOORS[m.group(1)] if floor else m.group("variant"),
               None if floor else loss_key(m), int(m.group("elements")),
               None if floor else int(m.group("ppm")),
               None if floor else float(m.group("delta")), None if floor else m.group("dist"),
               threads)
        # Medians, except for the floors: their fastest repetition ("min") where recorded.
        want = ("min", "median") if floor and key[0] != "focal" else ("median",)
        med = sorted((e for e in entries if e.get("run_type") == "aggregate"
                      and e.get("aggregate_name") in want and not e.get("error_occurred")),
                     key=lambda e: want.index(e["aggregate_name"]))
        ok = [e for e in entries if e.get("run_type", "iteration") == "iteration"
              and not e.get("error_occurred")]
        errs = [e for e in entries if e.get("error_occurred")]
        cell = {"name": rn, "time_ms": None, "message": "", "predicted_ms": None, "reps": 0,
                "skip_reason": ""}
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
            f = label_fields(errs[0].get("label"))
            cell["skip_reason"] = f.get("skip_reason", "unknown")
            if "predicted_s" in f:
                cell["predicted_ms"] = float(f["predicted_s"]) * 1e3
            if "mem_estimate_gb" in f:  # too_big (PyTorch PAP): the dense matrices' estimate
                cell["mem_estimate_gb"] = f["mem_estimate_gb"]
        cells[key] = cell
    return cells


def times_fmt(x):
    """A ratio as "4.3x" or "185x"."""
    return "%.0fx" % x if x >= 100 else "%.2gx" % x if x >= 10 else "%.1fx" % x


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


def training_step_rows(results):
    """The README table's rows for bench/torch_step.py: the newest results/*-torch-step.json (by
    its recorded date), one row per batch size and device with both times and the speed-up."""
    runs = []
    for p in glob.glob(os.path.join(results, "*-torch-step.json")):
        try:
            with open(p) as f:
                j = json.load(f)
            runs.append((j["context"].get("date", ""), p, j))
        except (OSError, ValueError, KeyError):
            continue
    if not runs:
        return []
    _, path, j = max(runs, key=lambda r: (r[0], r[1]))
    ctx = j["context"]
    t, skipped = {}, {}
    for b in j.get("benchmarks", []):
        m = re.match(r"BM_torch_step/(published|aploss)_(cpu|cuda)/images:(\d+)$", b.get("name", ""))
        if not m:
            continue
        if b.get("error_occurred"):
            skipped[m.group(2)] = b.get("error_message", "skipped")
        elif b.get("real_time"):
            t[(m.group(1), m.group(2), int(m.group(3)))] = (b["real_time"], b.get("elements"))
    out = ["", "One training step's loss forward + backward in PyTorch (bench/torch_step.py, `%s`, "
           "%s, median of the steps; torch %s thread(s), library %s thread(s)): the published "
           "loop's transcription (`python/aploss/published.py`) vs `aploss.torch.ap_loss`." % (
               os.path.basename(path), ctx.get("date", "?")[:10], ctx.get("torch_threads", "?"),
               ctx.get("library_threads", "?")),
           "", "| device | images | elements | published (ms) | aploss.torch (ms) | speed-up |",
           "|---|---:|---:|---:|---:|---:|"]
    for dev in ("cpu", "cuda"):
        for n in sorted({k[2] for k in t if k[1] == dev}):
            pub, apl = t.get(("published", dev, n)), t.get(("aploss", dev, n))
            el = (pub or apl)[1]
            out.append("| %s | %d | %s | %s | %s | %s |" % (
                dev, n, el if el is not None else "?",
                "%.1f" % pub[0] if pub else "n/a", "%.1f" % apl[0] if apl else "n/a",
                "%.1fx" % (pub[0] / apl[0]) if pub and apl and apl[0] > 0 else "n/a"))
    for dev in ("cpu", "cuda"):
        if dev in skipped and not any(k[1] == dev for k in t):
            out.append("| %s | | | %s | | |" % (dev, md(skipped[dev])))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=os.path.join(ROOT, "results"))
    ap.add_argument("--bench", help="aploss_bench JSON (default: newest non-torch results/*.json)")
    ap.add_argument("--torch", help="PyTorch baseline JSON (default: <bench stem>-torch.json)")
    ap.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    a = ap.parse_args()

    if not a.bench:
        # aploss_bench's own output only (the torch, torch-step and dist JSONs sit beside it), the
        # newest by the run's recorded date: file times mean nothing in a fresh clone.
        found = []
        for p in glob.glob(os.path.join(a.results, "*.json")):
            if p.endswith("-torch.json"):
                continue
            try:
                with open(p) as f:
                    j = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(j, dict) and "benchmarks" in j and "sweep" in j.get("context", {}):
                found.append((j["context"].get("date", ""), p))
        if not found:
            print("convert.py: no aploss_bench results/*.json: run bench/run.sh first",
                  file=sys.stderr)
            return 1
        a.bench = max(found)[1]
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

    # The sweep the run used (recorded in its context), else today's declaration.
    sw = sweepdecl.load(text=ctx["sweep_json"]) if ctx.get("sweep_json") else sweepdecl.load()
    mode_name = ctx.get("sweep", "default")
    extend = sw["modes"].get(mode_name, {}).get("extend", False)
    classes = sw["generator"]["classes"]
    t_all = int(ctx.get("threads_all", 1))  # what "all" meant on the machine that ran

    def size_of(slice_name, i=0):
        b, an = sw["slices"][slice_name]["sizes"][i]
        return b * an * classes

    def in_slice(slice_name, k):
        return slice_name in sw["slices"] and sweepdecl.in_slice(sw, slice_name, extend, k[2],
                                                                 k[3], k[4], k[5])

    one_image = size_of("pos_rate")
    tb = sw["table"]
    tsl = sw["slices"][tb["slice"]]
    t_el, t_ppm, t_delta = size_of(tb["slice"]), tsl["pos_ppm"][0], float(tsl["delta"][0])
    t_loss, t_dist = tb["loss"], tb["dist"]

    # Variants in table order (the context lists them), then any others, then PyTorch.
    table_variants = [v for v in ctx.get("variants", "").split(",") if v] or \
        [k.split(":", 1)[1] for k in ctx if k.startswith("variant:")]
    seen = {k[0] for k in cells}
    variants = [v for v in table_variants if v in seen]
    variants += sorted(v for v in seen if v not in variants and v not in BASELINES
                       and not v.startswith("torch"))
    torches = sorted(v for v in seen if v.startswith("torch"))
    colour = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(variants)}
    colour.update({v: TORCH_COLOURS[i % 2] for i, v in enumerate(torches)})
    colour.update({"floor": FLOOR_COLOUR, "floor_gpu": FLOOR_GPU_COLOUR,
                   "floor_1t": FLOOR_1T_COLOUR, "focal": FOCAL_COLOUR})

    # The baselines by (elements, threads); the device floor by elements.
    floor = {(k[2], k[6]): c["time_ms"] for k, c in cells.items()
             if k[0] == "floor" and c["time_ms"] is not None}
    focal = {(k[2], k[6]): c["time_ms"] for k, c in cells.items()
             if k[0] == "focal" and c["time_ms"] is not None}
    floor_gpu = {k[2]: c["time_ms"] for k, c in cells.items()
                 if k[0] == "floor_gpu" and c["time_ms"] is not None}

    def on_gpu(v):
        """GPU rows (the context says GPU), torch_cuda and the device floor."""
        return v == "floor_gpu" or ctx.get("variant:" + v, "").startswith("GPU") or \
            (v.startswith("torch") and "cuda" in v)

    def floor_of(k):
        """The floor a row is measured against: same size and thread count (device floor for
        GPU rows)."""
        return floor_gpu.get(k[2]) if on_gpu(k[0]) else floor.get((k[2], k[6]))

    def focal_of(k):
        """Focal loss at the same size and thread count (CPU rows only: it runs on the CPU)."""
        return None if on_gpu(k[0]) else focal.get((k[2], k[6]))

    def ratio(num, den):
        return num / den if num and den else None

    # ---- summary.csv ----
    os.makedirs(a.results, exist_ok=True)
    with open(os.path.join(a.results, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["name", "variant", "loss", "elements", "pos_ppm", "delta", "dist", "threads",
                    "positives", "valid_negatives", "time_ms", "floor_ms", "floor_fraction",
                    "focal_ms", "x_focal", "reps", "validated_on_elements", "val_max_rel_err",
                    "loss_diff_vs_ours", "grad_max_rel_diff_vs_ours", "status", "skip_reason"])
        for k in sorted(cells, key=lambda k: (k[0] not in BASELINES, k[0], k[1] or "", k[2],
                                              k[3] or 0, k[4] or 0, k[5] or "", k[6] or 0)):
            c = cells[k]
            fl, fo = floor_of(k), focal_of(k)
            w.writerow([c["name"], k[0], k[1], k[2], k[3], k[4], k[5], k[6], c.get("positives"),
                        c.get("valid_negatives"), fmt_num(c["time_ms"]), fmt_num(fl),
                        fmt_num(ratio(fl, c["time_ms"])), fmt_num(fo),
                        fmt_num(ratio(c["time_ms"], fo)), c["reps"], c.get("val_elements"),
                        c.get("val_max_rel_err"), c.get("loss_diff"), c.get("grad_max_rel_diff"),
                        "timed" if c["time_ms"] is not None else c["message"],
                        c["skip_reason"]])

    # The all-cores view the slices with threads ["all"] show: each variant at t_all, else at
    # the one thread count it has (one-thread variants, PyTorch), GPU rows without one.
    groups = {}
    for k in cells:
        if k[0] not in BASELINES:
            groups.setdefault(k[:6], {})[k[6]] = k

    def view(g):
        ths = groups.get(g, {})
        for th in (t_all, 1, None):
            if th in ths:
                return ths[th]
        return next(iter(ths.values()), None)

    meta = []
    not_timed = {}  # variant -> first skip code, for variants never timed anywhere

    def baseline_series(sel_el):
        """floor / floor at 1 thread / focal (at t_all) / device floor over the sizes chosen."""
        out = [("floor", {el: t for (el, th), t in floor.items() if th == t_all and sel_el(el)})]
        if t_all != 1:
            out.append(("floor_1t", {el: t for (el, th), t in floor.items()
                                     if th == 1 and sel_el(el)}))
        out.append(("focal", {el: t for (el, th), t in focal.items() if th == t_all and sel_el(el)}))
        out.append(("floor_gpu", {el: t for el, t in floor_gpu.items() if sel_el(el)}))
        return [(n, v) for n, v in out if v]

    def title_of(t):
        return {"floor": "floor (%d thr)" % t_all, "floor_1t": "floor (1 thr)",
                "focal": "focal loss (%d thr)" % t_all}.get(t, t)

    def series_for(select, xkey, with_base):
        """Measured series (baselines, variants, torch) and predicted-only series for a slice
        (loss ap, the all-cores view)."""
        xs, meas, pred = set(), [], []
        if with_base:
            for n, vals in baseline_series(lambda el: any(select(g) and g[2] == el for g in groups)):
                meas.append((n, vals))
                xs.update(vals)
        for v in variants + torches:
            vals, pvals = {}, {}
            for g in groups:
                if g[0] != v or g[1] != "ap" or not select(g):
                    continue
                k = view(g)
                c = cells[k]
                x = xkey(g)
                xs.add(x)
                if c["time_ms"] is not None:
                    vals[x] = c["time_ms"]
                elif c["predicted_ms"] is not None:
                    pvals[x] = c["predicted_ms"]
                elif v not in not_timed:
                    not_timed[v] = c["skip_reason"]
            if vals:
                meas.append((v, vals))
            if pvals:
                pred.append(("%s predicted, not run (over budget)" % v, pvals, v))
        return sorted(xs), meas, pred

    def dash_of(t):
        return {"floor_gpu": "4", "floor": "2", "floor_1t": "2", "focal": "3"}.get(
            t, "2" if t.startswith("torch") else "1")

    def slice_dat(prefix, fname, xname, select, xkey, with_base, comment):
        xs, meas, pred = series_for(select, xkey, with_base)
        series = [(title_of(t), v) for t, v in meas] + [(t, vals) for t, vals, _ in pred]
        write_dat(os.path.join(a.results, fname), xname, xs, series, comment)
        cols = [colour[t] for t, _ in meas] + [colour[v] for _, _, v in pred]
        meta.append("%s_n = %d  # measured series: columns 2..%d" % (prefix, len(meas), len(meas) + 1))
        meta.append("%s_np = %d  # predicted-only series after them" % (prefix, len(pred)))
        # A trailing spare: gnuplot evaluates an empty "for" clause's options once.
        meta.append("%s_colours = %s" % (prefix, quote(" ".join(cols + ["#000000"]))))
        meta.append("%s_dash = %s" % (prefix, quote(" ".join(dash_of(t) for t, _ in meas) + " 1")))
        return xs, meas

    def el_select(g):
        return in_slice("elements", g)

    def el_select_el(el):
        """An element count of the elements slice."""
        return any(el_select(g) and g[2] == el for g in groups)

    xs_el, meas_el = slice_dat("el", "elements.dat", "elements", el_select, lambda g: g[2], True,
                               "time per call (ms) vs elements; the elements slice, all cores")
    xs_pr, _ = slice_dat("pr", "pos_rate.dat", "pos_rate", lambda g: in_slice("pos_rate", g),
                         lambda g: g[3] * 1e-6, False,
                         "time per call (ms) vs positive-anchor rate; %d elements" % one_image)
    dists = sw["slices"]["delta_dist"]["dist"]
    for d in dists:
        slice_dat("d_" + d, "delta_%s.dat" % d, "delta",
                  lambda g, d=d: in_slice("delta_dist", g) and g[5] == d, lambda g: g[4], False,
                  "time per call (ms) vs delta; %d elements, dist %s" % (one_image, d))
    for d in dists:  # share of valid negatives at delta 1, for the panel titles
        c = next((c for k, c in cells.items() if k[2] == one_image and k[3] == 1000
                  and k[4] == 1.0 and k[5] == d and c.get("valid_negatives") is not None), None)
        meta.append("d_%s_vshare = %s" % (d, quote(
            "%.3g%%" % (100.0 * c["valid_negatives"] / one_image) if c else "?")))
    fl_one = floor.get((one_image, t_all))
    meta.append("floor_one_image_ms = %s" % (fmt_num(fl_one) if fl_one else "NaN"))
    meta.append("threads_all = %d" % t_all)

    # Positives per call as x2 tics: elements slice and pos-rate slice.
    def x2tics(select, xkey):
        pos_at = {}
        for k, c in cells.items():
            if k[0] not in BASELINES and select(k) and c.get("positives") is not None:
                pos_at[xkey(k)] = int(c["positives"])
        return quote("(" + ", ".join("'%d' %s" % (pos_at[x], fmt_num(x)) for x in sorted(pos_at))
                     + ")")
    meta.append("el_x2tics = %s" % x2tics(el_select, lambda k: k[2]))
    # Sizes with no positive at all (small inputs at pos rate 1e-3): shaded in the plots.
    zero = sorted(k[2] for k, c in cells.items() if k[0] not in BASELINES and el_select(k)
                  and c.get("positives") == 0)
    more = [x for x in xs_el if zero and x > zero[-1]]
    edge = math.sqrt(zero[-1] * more[0]) if zero and more else (zero[-1] * 1.5 if zero else 0)
    meta.append("el_nopos_edge = %g  # elements below this had no positive" % edge)
    for prefix, xs in (("el", xs_el), ("pr", xs_pr)):
        meta.append("%s_xrange = %s" % (prefix, quote("[%g:%g]" % (min(xs) / 1.5, max(xs) * 1.5)
                                                      if xs else "[*:*]")))
    meta.append("pr_x2tics = %s" % x2tics(lambda k: in_slice("pos_rate", k), lambda k: k[3] * 1e-6))

    # One y range for the delta panels.
    ys = [c["time_ms"] or c["predicted_ms"] for k, c in cells.items()
          if k[0] not in BASELINES and in_slice("delta_dist", k) and (c["time_ms"] or c["predicted_ms"])]
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
        vals = {}
        for g in groups:
            if g[0] == v and g[1] == "ap" and el_select(g):
                k = view(g)
                r = ratio(floor_of(k), cells[k]["time_ms"])
                if r:
                    vals[g[2]] = r
        if vals:
            ff.append((v, vals))
    write_dat(os.path.join(a.results, "floor_fraction.dat"), "elements", xs_el, ff,
              "floor time / variant time at the same size and thread count (1 = as fast as one "
              "read+write pass); elements slice")
    meta.append("ff_n = %d" % len(ff))
    meta.append("ff_colours = %s" % quote(" ".join(colour[t] for t, _ in ff)))

    # ---- the thread-scaling slice: time and floor fraction vs threads, per dist ----
    th_sl = "threads"
    th_dists = sw["slices"].get(th_sl, {}).get("dist", [])
    th_el = size_of(th_sl) if th_sl in sw["slices"] else None
    for d in th_dists:
        sel = [k for k in cells if k[0] not in BASELINES and k[1] == "ap" and k[6] is not None
               and in_slice(th_sl, k) and k[5] == d]
        xs = sorted({k[6] for k in sel} | {th for (el, th) in floor if el == th_el})
        times = [("floor", {th: t for (el, th), t in floor.items() if el == th_el}),
                 ("focal loss", {th: t for (el, th), t in focal.items() if el == th_el})]
        cols, dash, ffs, ffcols = [FLOOR_COLOUR, FOCAL_COLOUR], ["2", "3"], [], []
        for v in variants + torches:
            tv = {k[6]: cells[k]["time_ms"] for k in sel if k[0] == v and cells[k]["time_ms"]}
            if tv:
                times.append((v, tv))
                cols.append(colour[v])
                dash.append(dash_of(v))
                fv = {th: floor[(th_el, th)] / t for th, t in tv.items() if (th_el, th) in floor}
                if fv:
                    ffs.append((v, fv))
                    ffcols.append(colour[v])

        write_dat(os.path.join(a.results, "threads_%s.dat" % d), "threads", xs, times,
                  "time per call (ms) vs threads; %s elements, dist %s, loss ap" % (th_el, d))
        write_dat(os.path.join(a.results, "threads_ff_%s.dat" % d), "threads", xs, ffs,
                  "floor time / variant time at the same thread count; %s elements, dist %s"
                  % (th_el, d))
        meta.append("th_%s_n = %d" % (d, len(times)))
        meta.append("th_%s_colours = %s" % (d, quote(" ".join(cols + ["#000000"]))))
        meta.append("th_%s_dash = %s" % (d, quote(" ".join(dash + ["1"]))))
        meta.append("th_ff_%s_n = %d" % (d, len(ffs)))
        meta.append("th_ff_%s_colours = %s" % (d, quote(" ".join(ffcols + ["#000000"]))))
        meta.append("th_%s_xtics = %s" % (d, quote("(" + ", ".join("%d" % x for x in xs) + ")")
                                          if xs else '"(1)"'))
    meta.append("th_dists = %s" % quote(" ".join(th_dists)))
    meta.append("th_elements = %s" % (th_el or 0))

    # ---- per loss: time vs elements over the elements slice (plots/9_losses.gp) ----
    # One facet per loss family; PAP's top-K values in one facet, told apart by the dash.
    loss_keys = sorted({k[1] for k in cells if k[0] not in BASELINES and k[1]},
                       key=lambda lk: (lk != "ap", lk != "alrp", lk.endswith(":0"), lk))
    lo_facets = []
    for fam in ("ap", "alrp", "pap"):
        ser, cols, dash = [], [], []
        for lk in (lk for lk in loss_keys if lk.split("/")[0] == fam):
            for v in variants + torches:
                vals = {}
                for g in groups:
                    if g[0] == v and g[1] == lk and el_select(g):
                        t = cells[view(g)]["time_ms"]
                        if t is not None:
                            vals[g[2]] = t
                if vals:
                    ser.append((v + ("" if lk == fam else ", " + loss_title(lk)[5:]), vals))
                    cols.append(colour[v])
                    dash.append("2" if lk.endswith("topk:0") else "1")
        if not ser:
            continue
        fl = {el: t for (el, th), t in floor.items() if th == t_all and el_select_el(el)}
        if fl:
            ser.insert(0, (title_of("floor"), fl))
            cols.insert(0, FLOOR_COLOUR)
            dash.insert(0, "3")
        xs = sorted({x for _, vals in ser for x in vals})
        write_dat(os.path.join(a.results, "losses_%s.dat" % fam), "elements", xs, ser,
                  "time per call (ms) vs elements, loss %s (PAP: each top-K; dashed: "
                  "untruncated); the elements slice, all cores" % fam)
        lo_facets.append(fam)
        meta.append("lo_%s_n = %d" % (fam, len(ser)))
        meta.append("lo_%s_colours = %s" % (fam, quote(" ".join(cols + ["#000000"]))))
        meta.append("lo_%s_dash = %s" % (fam, quote(" ".join(dash + ["1"]))))
    # Drawn only when some loss other than AP was timed.
    meta.append("lo_facets = %s" % quote(" ".join(lo_facets) if set(lo_facets) - {"ap"} else ""))

    # ---- machine, and what was not timed at all ----
    machine = ctx.get("cpu_model", "unknown CPU")
    if ctx.get("num_cpus"):
        machine += " (%s cores)" % ctx["num_cpus"]
    gpu = ctx.get("gpu", "")
    if gpu and not gpu.startswith("none"):
        machine += ", " + gpu
    date = ctx.get("date", "")[:10]
    skipped = [v for v in variants + torches
               if all(cells[k]["time_ms"] is None for k in cells if k[0] == v)]
    reasons = {}
    for v in skipped:
        code = not_timed.get(v) or next((cells[k]["skip_reason"] for k in cells if k[0] == v), "")
        reasons.setdefault(skip_text(code), []).append(v)
    note = "; ".join("%s (%s)" % (", ".join(vs), why) for why, vs in reasons.items())
    meta.insert(0, "machine = %s" % quote(machine))
    meta.insert(1, "run_date = %s" % quote(date))
    meta.insert(2, "not_timed = %s" % quote(("not timed: " + note) if note else ""))
    meta.insert(3, "source = %s" % quote(os.path.basename(a.bench)))
    with open(os.path.join(a.results, "plot_meta.gp"), "w") as f:
        f.write("# generated by bench/convert.py from %s; loaded by plots/*.gp\n"
                % os.path.basename(a.bench))
        f.write("\n".join(meta) + "\n")

    # ---- the README table: sweep.json "table" (RetinaNet batch 8), every thread count ----
    def rows_at(v, dist=t_dist):
        g = (v, t_loss, t_el, t_ppm, t_delta, dist)
        return [groups[g][th] for th in sorted(groups.get(g, {}), key=lambda x: x or 0)]

    def t_of(k):
        return cells[k]["time_ms"] if k and cells[k]["time_ms"] is not None else None

    naive_k = view(("naive", t_loss, t_el, t_ppm, t_delta, t_dist))
    torch_k = view((torches[0], t_loss, t_el, t_ppm, t_delta, t_dist)) if torches else None
    desc = {k.split(":", 1)[1]: val for k, val in ctx.items() if k.startswith("variant:")}
    for t in torches:
        desc[t] = "CPU | PyTorch %s | O(P*M) | the published algorithm as a PyTorch loop over " \
                  "positives (bench/torch_baseline.py)" % torch_ctx.get("torch", "?") \
            if t == "torch_cpu" else "GPU | PyTorch %s | O(P*M) | the same loop on %s" % (
                torch_ctx.get("torch", "?"), torch_ctx.get("gpu", "CUDA"))

    def stat_of(name, el, th):
        c = cells.get((name, None, el, None, None, None, th), {})
        return "fastest run" if c.get("stat") == "min" else "median"

    fl_gpu = floor_gpu.get(t_el)
    gpu_timed = fl_gpu or any(on_gpu(v) and any(t_of(k) for k in rows_at(v)) for v in variants)
    gpu_note = (" GPU rows: device-resident (inputs already on the GPU, kernels only), CUDA-event "
                "time; their fraction is against the device memory floor (the same pass as one "
                "kernel on the GPU; %s): %s ms; focal loss runs on the CPU, so no x focal." % (
                    stat_of("floor_gpu", t_el, None), "%.3g" % fl_gpu if fl_gpu else "n/a")
                if gpu_timed else "")
    base_ths = sorted({th for (el, th) in floor if el == t_el})
    pos8 = next((int(c["positives"]) for k, c in cells.items()
                 if k[2] == t_el and k[5] == t_dist and c.get("positives") is not None), None)
    lines = [
        "Measured on %s, %s, git %s, from `results/%s`: %s = %d elements, %s "
        "positives, delta %g, `%s` scores, loss %s, median of %s runs. Memory floor (read logits "
        "and targets, write the gradient once; %s), by threads: %s ms. Sigmoid focal loss "
        "(alpha 0.25, gamma 2, forward + gradient in one pass), by threads: %s ms. Fraction of "
        "memory floor = floor time / variant time at the same thread count (1 = memory-bound); "
        "x focal = variant time / focal-loss time at the same thread count (the price of "
        "training on the ranking loss instead). \"all\" cores here = %d thread(s).%s%s"
        % (machine, date, ctx.get("git_revision", "?"), os.path.basename(a.bench),
           "RetinaNet batch %d" % (t_el // (32736 * classes)) if t_el % (32736 * classes) == 0
           else "the table's input", t_el,
           pos8 if pos8 is not None else "?", t_delta, t_dist, t_loss,
           max([c["reps"] for c in cells.values()] or [1]), stat_of("floor", t_el, t_all),
           ", ".join("%d: %.1f" % (th, floor[(t_el, th)]) for th in base_ths) or "n/a",
           ", ".join("%d: %.1f" % (th, focal[(t_el, th)]) for th in base_ths
                     if (t_el, th) in focal) or "n/a",
           t_all, gpu_note,
           " Load average when the sweep started: %s (other work on the machine inflates times)."
           % ", ".join("%.2f" % x for x in ctx["load_avg"]) if ctx.get("load_avg") else ""),
        "",
        "| variant | what it is | threads | time (ms) | x focal | fraction of memory floor | "
        "speed-up over naive | speed-up over PyTorch |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v in variants + torches:
        d = desc.get(v, "").split(" | ")
        what = "%s (%s, %s)" % (d[3], d[1], d[2]) if len(d) >= 4 else desc.get(v, "")
        ks = rows_at(v)
        if not ks:
            lines.append("| %s | %s | | not run at this size | | | | |" % (v, md(what)))
            continue
        for k in ks:
            c, t = cells[k], t_of(k)
            th = "GPU" if k[6] is None else "%d" % k[6]
            if t is None:
                why = skip_text(c["skip_reason"])
                if c["predicted_ms"]:
                    why = "not run: predicted %.0f s > budget" % (c["predicted_ms"] / 1e3)
                lines.append("| %s | %s | %s | %s | | | | |" % (v, md(what), th, md(why)))
                continue
            sn, st = ratio(t_of(naive_k), t), ratio(t_of(torch_k), t)
            xf, fr = ratio(t, focal_of(k)), ratio(floor_of(k), t)
            lines.append("| %s | %s | %s | %.1f | %s | %s | %s | %s |" % (
                v, md(what), th, t, "%.1fx" % xf if xf else "n/a", "%.3g" % fr if fr else "n/a",
                "%.1fx" % sn if sn else "n/a", "%.1fx" % st if st else "n/a"))
    # Per score distribution (the thread slice's dists), each variant at all cores.
    t_dists = tsl.get("dist", [])
    if len(t_dists) > 1:
        lines += ["", "Per score distribution at the same size, all cores (%d thread(s); "
                  "one-thread variants at 1): time in ms (time / floor time, x focal)." % t_all, "",
                  "| variant | threads | " + " | ".join(t_dists) + " |",
                  "|---|---:|" + "---:|" * len(t_dists)]
        for v in variants + torches:
            ks = [view((v, t_loss, t_el, t_ppm, t_delta, d)) for d in t_dists]
            if not any(t_of(k) for k in ks):
                continue
            th = next(("GPU" if k[6] is None else "%d" % k[6] for k in ks if k), "")
            parts = []
            for k in ks:
                t = t_of(k)
                if t is None:
                    parts.append(md(skip_text(cells[k]["skip_reason"])) if k else "")
                    continue
                fl, fo = floor_of(k), focal_of(k)
                parts.append("%.1f (%s floor, %s focal)" % (t, times_fmt(t / fl) if fl else "n/a",
                                                            times_fmt(t / fo) if fo else "n/a"))
            lines.append("| %s | %s | %s |" % (v, th, " | ".join(parts)))
    # The other losses at the same cell, all cores: aLRP (naive, pruned, sorted, PyTorch) and
    # PAP at each K of the top-K axis (naive, sorted, PyTorch); rows that were not timed say why.
    other = [lk for lk in loss_keys if lk != "ap" and any(
        g[1] == lk and g[2:6] == (t_el, t_ppm, t_delta, t_dist) for g in groups)]
    if other:
        lines += ["", "Other losses at the same input (%d elements, `%s` scores), all cores "
                  "(one-thread variants at 1): aLRP (docs/SPEC_ALRP.md) and PAP (docs/SPEC_PAP.md, "
                  "parameters `%s`) at each top-K (0 = untruncated: every valid entry ranked). "
                  "PyTorch: the published code's transcription (aLRP: the official loop over "
                  "positives; PAP: the official dense |S| x |P| computation, forward + backward), "
                  "its loss and gradient checked against ours before its time counts."
                  % (t_el, t_dist, sw.get("pap", {}).get("params", "?")), "",
                  "| loss | variant | threads | time (ms) | x focal | fraction of memory floor | "
                  "speed-up over naive | speed-up over PyTorch |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for lk in other:
            def at(v):
                return view((v, lk, t_el, t_ppm, t_delta, t_dist))
            nk = at("naive")
            tk = at(torches[0]) if torches else None
            for v in variants + torches:
                k = at(v)
                if k is None:
                    continue
                c, t = cells[k], t_of(k)
                th = "GPU" if k[6] is None else "%d" % k[6]
                if t is None:
                    why = skip_text(c["skip_reason"])
                    if c["predicted_ms"]:
                        why = "not run: predicted %.0f s > budget" % (c["predicted_ms"] / 1e3)
                    elif c.get("mem_estimate_gb"):
                        why = "not run: its dense matrices need about %s GB" % c["mem_estimate_gb"]
                    lines.append("| %s | %s | %s | %s | | | | |" % (loss_title(lk), v, th, md(why)))
                    continue
                sn, st = ratio(t_of(nk), t), ratio(t_of(tk), t)
                xf, fr = ratio(t, focal_of(k)), ratio(floor_of(k), t)
                lines.append("| %s | %s | %s | %.1f | %s | %s | %s | %s |" % (
                    loss_title(lk), v, th, t, "%.1fx" % xf if xf else "n/a",
                    "%.3g" % fr if fr else "n/a", "%.1fx" % sn if sn else "n/a",
                    "%.1fx" % st if st else "n/a"))
    lines += training_step_rows(a.results)
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
