#!/usr/bin/python3
"""torch_baseline.py: the PyTorch baseline, timed on the benchmark's own inputs.

The published AP-Loss algorithm as a PyTorch loop over the positives, written from the SPEC
(../../shared/SPEC.md): batch ranking over all elements, pruning of negatives below
min positive - delta, positives visited in ascending order of logit carrying max_prec and the
factor. Inputs come from `aploss gen` (the one generator, seed 12345), our loss and gradient
from `aploss run --variant sorted`; the baseline's loss and gradient are compared with ours
(the SPEC tolerance is 1e-6; float32 torch may be about that far off) and the differences are
recorded. Timings go to a Google Benchmark-like JSON (`benchmarks`: name, real_time, time_unit)
with the bench binary's names: BM_loss/torch_cpu/elements:M/pos_ppm:R/delta:D/dist:X.

Run with Debian's python (/usr/bin/python3, python3-torch and python3-numpy from apt):
    /usr/bin/python3 bench/torch_baseline.py --cli build/aploss --out results/X-torch.json [--full]
Without torch it prints why and writes a JSON whose every cell is an error "skipped: ...".
"""
import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time

RETINANET_ANCHORS = 32736
CLASSES = 80
SEED = 12345


def cells(sweep):
    """The bench binary's slices (aploss_bench.cc, sweep_cells; see bench/README.md)."""
    A = RETINANET_ANCHORS
    sizes = [(1, 13), (1, 128), (1, 1280), (1, 12500), (1, A), (4, A), (8, A)]
    ppms = [100, 300, 1000, 3000, 10000, 30000, 100000, 300000]
    if sweep == "full":
        sizes += [(16, A), (1, 1250000)]
        ppms += [500000]
    out = [(b, a, 1000, 1.0, "mid") for b, a in sizes]
    out += [(1, A, p, 1.0, "mid") for p in ppms]
    out += [(1, A, 1000, d, dist) for dist in ("early", "mid", "late")
            for d in (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)]
    seen, uniq = set(), []
    for c in out:
        if c not in seen:
            seen.add(c)
            uniq.append(c)
    return uniq


def bench_name(variant, elements, ppm, delta, dist):
    return "BM_loss/%s/elements:%d/pos_ppm:%d/delta:%g/dist:%s" % (variant, elements, ppm, delta,
                                                                    dist)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def ap_loss_torch(torch, s, t, delta, sync):
    """The published algorithm, from the SPEC, in float32. Returns (loss, grad)."""
    grad = torch.zeros_like(s)
    pos_mask = t == 1
    fg = s[pos_mask]
    P = fg.numel()
    if P == 0:
        return 0.0, grad
    thr = fg.min() - delta
    neg_mask = (t == 0) & (s >= thr)  # pruning: exact, H(s_j - s_i) = 0 below thr
    bg = s[neg_mask]
    order = torch.argsort(fg).tolist()  # ascending logits
    fg_grad = torch.zeros_like(fg)
    bg_grad = torch.zeros_like(bg)
    max_prec = 0.0
    prec_sum = 0.0
    for ii in order:
        fg_rel = torch.clamp((fg - fg[ii]) / (2 * delta) + 0.5, min=0, max=1)
        bg_rel = torch.clamp((bg - fg[ii]) / (2 * delta) + 0.5, min=0, max=1)
        rank_pos = 0.5 + torch.sum(fg_rel)  # H(0) = 0.5 for i itself: 1 + sum over k != i
        rank = rank_pos + torch.sum(bg_rel)
        cur = (rank_pos / rank).item()
        if max_prec <= cur:
            max_prec = cur
            bg_grad += bg_rel / rank
        else:
            bg_grad += (bg_rel / rank) * ((1 - max_prec) / (1 - cur))
        fg_grad[ii] = -(1 - max_prec)
        prec_sum += max_prec
    grad[pos_mask] = fg_grad / P
    grad[neg_mask] = bg_grad / P
    sync()
    return 1.0 - prec_sum / P, grad


def run_cli(args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    return r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", default="build/aploss", help="the aploss command (default build/aploss)")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--full", action="store_true", help="the full sweep (adds 16 images, 1e8, pos_ppm 500000)")
    ap.add_argument("--reps", type=int, default=3, help="timed calls per cell, median reported")
    ap.add_argument("--rep-budget-s", type=float, default=15.0,
                    help="stop repeating a cell once its calls took this long (default 15)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="skip a cell predicted to take longer per call (default 60, full 300)")
    ap.add_argument("--ours", default="sorted", help="our variant to compare against (default sorted)")
    ap.add_argument("--filter", default="", help="only cells whose name contains this")
    a = ap.parse_args()
    sweep = "full" if a.full else "default"
    budget = a.budget_s if a.budget_s is not None else (300.0 if a.full else 60.0)

    context = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host_name": socket.gethostname(),
        "cpu_model": cpu_model(),
        "num_cpus": os.cpu_count(),
        "executable": "bench/torch_baseline.py",
        "python": sys.version.split()[0],
        "seed": str(SEED),
        "sweep": sweep,
        "budget_s": "%g" % budget,
        "timed": "the whole loss + gradient call on tensors already in memory (device sync included)",
    }
    todo = [c for c in cells(sweep)
            if a.filter in bench_name("torch_cpu", c[0] * c[1] * CLASSES, c[2], c[3], c[4])]
    results = []

    def write():
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"context": context, "benchmarks": results}, f, indent=2)
            f.write("\n")
        os.replace(tmp, a.out)

    try:
        import numpy as np
        import torch
    except Exception as e:  # ImportError, or a broken install
        msg = "skipped: cannot import torch/numpy with %s: %s" % (sys.executable, e)
        print("torch_baseline: " + msg, file=sys.stderr)
        for b, an, ppm, delta, dist in todo:
            name = bench_name("torch_cpu", b * an * CLASSES, ppm, delta, dist)
            results.append({"name": name, "run_name": name, "run_type": "iteration",
                            "error_occurred": True, "error_message": msg, "iterations": 0,
                            "real_time": 0, "cpu_time": 0, "time_unit": "ms"})
        write()
        return 0

    context["torch"] = torch.__version__
    context["numpy"] = np.__version__
    context["torch_threads"] = str(torch.get_num_threads())
    devices = [("torch_cpu", "cpu")]
    if torch.cuda.is_available():
        devices.append(("torch_cuda", "cuda"))
        context["gpu"] = torch.cuda.get_device_name(0)

    sec_per_op = {}  # per device: seconds per positive * valid negative, from the last cell
    with tempfile.TemporaryDirectory(prefix="aploss-torch-") as tmp:
        L, T, G = (os.path.join(tmp, f) for f in ("logits.npy", "targets.npy", "grad.npy"))
        for b, an, ppm, delta, dist in todo:
            elements = b * an * CLASSES
            run_cli([a.cli, "gen", "--logits", L, "--targets", T, "--batch", str(b), "--anchors",
                     str(an), "--classes", str(CLASSES), "--pos-rate", "%.17g" % (ppm * 1e-6),
                     "--dist", dist, "--seed", str(SEED)])
            ours = json.loads(run_cli([a.cli, "run", "--variant", a.ours, "--logits", L,
                                       "--targets", T, "--delta", "%.17g" % delta,
                                       "--grad-out", G]))
            s_np = np.load(L).reshape(-1)
            t_np = np.load(T).reshape(-1)
            g_ours = np.load(G).reshape(-1).astype(np.float64)
            P, V = ours["positives"], ours["valid_negatives"]
            for vname, dev in devices:
                name = bench_name(vname, elements, ppm, delta, dist)
                entry = {"name": name, "run_name": name, "run_type": "aggregate",
                         "aggregate_name": "median", "time_unit": "ms",
                         "positives": P, "valid_negatives": V}
                ops = max(P, 1) * (V + P + 1)
                predicted = sec_per_op.get(dev, 0.0) * ops
                if predicted > budget:
                    entry.update(error_occurred=True, iterations=0, real_time=0, cpu_time=0,
                                 error_message="skipped: predicted %.3g s per call > budget %g s "
                                 "(P = %d, V = %d)" % (predicted, budget, P, V))
                    results.append(entry)
                    print("%s: %s" % (name, entry["error_message"]), file=sys.stderr)
                    write()
                    continue
                s = torch.from_numpy(s_np).to(dev)
                t = torch.from_numpy(t_np).to(dev)
                if dev == "cuda":
                    sync = torch.cuda.synchronize
                else:
                    def sync():
                        pass
                times, cpu_times = [], []
                with torch.no_grad():
                    for rep in range(a.reps):
                        sync()
                        t0, c0 = time.perf_counter(), time.process_time()
                        loss, grad = ap_loss_torch(torch, s, t, delta, sync)
                        times.append(time.perf_counter() - t0)
                        cpu_times.append(time.process_time() - c0)
                        if sum(times) > a.rep_budget_s:
                            break  # slow cells: fewer calls, recorded in "repetitions"
                med = statistics.median(times)
                if ops > 1e6:
                    sec_per_op[dev] = med / ops
                g = grad.double().cpu().numpy()
                gmax = float(np.max(np.abs(g_ours))) if g_ours.size else 0.0
                gerr = float(np.max(np.abs(g - g_ours))) if g_ours.size else 0.0
                loss_diff = abs(loss - ours["loss"])
                entry.update(repetitions=len(times), iterations=len(times),
                             real_time=med * 1e3, cpu_time=statistics.median(cpu_times) * 1e3,
                             loss=loss, loss_ours=ours["loss"], loss_diff=loss_diff,
                             grad_max_rel_diff=gerr / gmax if gmax > 0 else gerr,
                             items_per_second=elements / med,
                             label="loss vs %s: |diff| = %.3g (SPEC tolerance 1e-6); grad max "
                                   "rel diff %.3g" % (a.ours, loss_diff,
                                                      gerr / gmax if gmax > 0 else gerr))
                results.append(entry)
                print("%s: %.3f ms (median of %d), P=%d V=%d, |loss diff| %.3g, grad rel diff "
                      "%.3g" % (name, med * 1e3, len(times), P, V, loss_diff,
                                entry["grad_max_rel_diff"]), file=sys.stderr)
                write()
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
