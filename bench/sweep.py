#!/usr/bin/env python3
"""sweep.py: reads bench/sweep.json, the one declaration of the benchmark sweep, for
bench/torch_baseline.py and bench/convert.py (aploss_bench.cc reads the same file with
bench/sweep.cc). Standard library only.

    python3 bench/sweep.py --list-cells default   # one line per cell, as aploss_bench
                                                  # --apl_list_cells prints them (a CTest
                                                  # compares the two)
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PATH = os.path.join(HERE, "sweep.json")
AXES = ("sizes", "pos_ppm", "dist", "delta", "threads", "losses")


def load(path=None, text=None):
    """The sweep as a dict: from text (e.g. the copy recorded in a result's context) or a file."""
    if text is not None:
        return json.loads(text)
    with open(path or DEFAULT_PATH) as f:
        return json.load(f)


def mode(sweep, name):
    try:
        return sweep["modes"][name]
    except KeyError:
        raise SystemExit("sweep.py: no mode %r in the sweep (have %s)"
                         % (name, ", ".join(sweep["modes"])))


def slice_axes(sweep, slice_name, extend):
    """The slice's axis lists, with its 'full' values appended when extend is true."""
    s = sweep["slices"][slice_name]
    out = {}
    for ax in AXES:
        vals = list(s.get(ax, sweep["losses"] if ax == "losses" else []))
        if extend:
            vals += s.get("full", {}).get(ax, [])
        out[ax] = vals
    return out


def fmt_delta(d):
    """delta as the benchmark names print it (C's %g)."""
    return "%g" % d


def cells(sweep, mode_name):
    """Every cell of a mode, in declaration order, without duplicates: dicts with batch,
    anchors, elements, pos_ppm, dist, delta, threads (list of numbers or 'all'), losses
    (list), slice (the first slice that declared it)."""
    m = mode(sweep, mode_name)
    classes = sweep["generator"]["classes"]
    out, index = [], {}
    for sl in m["slices"]:
        ax = slice_axes(sweep, sl, m.get("extend", False))
        for b, a in ax["sizes"]:
            for ppm in ax["pos_ppm"]:
                for dist in ax["dist"]:
                    for delta in ax["delta"]:
                        key = (b, a, ppm, dist, float(delta))
                        if key not in index:
                            index[key] = len(out)
                            out.append({"batch": b, "anchors": a, "elements": b * a * classes,
                                        "pos_ppm": ppm, "dist": dist, "delta": float(delta),
                                        "threads": [], "losses": [], "slice": sl})
                        c = out[index[key]]
                        c["threads"] += [t for t in ax["threads"] if t not in c["threads"]]
                        c["losses"] += [l for l in ax["losses"] if l not in c["losses"]]
    return out


def pap_topks(sweep):
    """The top-K axis of PAP rows (sweep.json pap.topk: a list, or one number; 0 = untruncated)."""
    k = sweep.get("pap", {}).get("topk", [100000])
    return [int(x) for x in (k if isinstance(k, list) else [k])]


def loss_names(c, sweep):
    """The loss parts of a cell's benchmark names: 'ap', 'alrp', 'pap/topk:K' per K."""
    out = []
    for l in c["losses"]:
        out += ["pap/topk:%d" % k for k in pap_topks(sweep)] if l == "pap" else [l]
    return out


def cell_suffix(c):
    return "elements:%d/pos_ppm:%d/delta:%s/dist:%s" % (c["elements"], c["pos_ppm"],
                                                        fmt_delta(c["delta"]), c["dist"])


def in_slice(sweep, slice_name, extend, elements, pos_ppm, delta, dist):
    """1 when a cell (by its name's fields) belongs to the slice."""
    ax = slice_axes(sweep, slice_name, extend)
    classes = sweep["generator"]["classes"]
    return (elements in [b * a * classes for b, a in ax["sizes"]] and pos_ppm in ax["pos_ppm"]
            and dist in ax["dist"] and any(float(d) == delta for d in ax["delta"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sweep", default=DEFAULT_PATH, help="the sweep file (default bench/sweep.json)")
    ap.add_argument("--list-cells", metavar="MODE", required=True,
                    help="print the cells of MODE, one per line")
    a = ap.parse_args()
    sw = load(a.sweep)
    for c in cells(sw, a.list_cells):
        print("%s threads:%s losses:%s" % (cell_suffix(c), ",".join(str(t) for t in c["threads"]),
                                           ",".join(c["losses"])))
    if "pap" in sw:
        print("pap params:%s topk:%s" % (sw["pap"]["params"],
                                          ",".join(str(k) for k in pap_topks(sw))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
