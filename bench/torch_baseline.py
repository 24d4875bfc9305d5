#!/usr/bin/python3
"""torch_baseline.py: the PyTorch baseline, timed on the benchmark's own inputs.

The published AP-Loss algorithm as a PyTorch loop over the positives
(python/aploss/published.py, the project's one transcription of it, from docs/SPEC.md): batch
ranking over all elements, pruning of negatives below min positive - delta, positives visited
in ascending order of logit carrying max_prec and the factor. Inputs come from `aploss gen` (the one generator, seed 12345), our loss and gradient
from `aploss run --variant sorted`; the baseline's loss and gradient are compared with ours
(the SPEC tolerance is 1e-6; float32 torch may be about that far off) and the differences are
recorded. Timings go to a Google Benchmark-like JSON (`benchmarks`: name, real_time, time_unit)
with the bench binary's names: BM_loss/torch_cpu/ap/elements:M/pos_ppm:R/delta:D/dist:X/threads:T
(T = torch.get_num_threads()). The cells, generator settings and budgets come from
bench/sweep.json (bench/sweep.py), the one declaration of the sweep: every cell of the mode
that asks for the loss "ap" (the baseline implements AP-Loss only). A cell not timed carries
the label "skip_reason=<code>" (no_torch, over_budget; predicted_s=...), as aploss_bench's do.

Run with Debian's python (/usr/bin/python3, python3-torch and python3-numpy from apt):
    /usr/bin/python3 bench/torch_baseline.py --cli build/aploss --out results/X-torch.json
                                             [--sweep default|full|tiny]
Without torch it prints why and writes a JSON whose every cell is skipped (skip_reason=no_torch).
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweep as sweepdecl  # noqa: E402  (bench/sweep.py, beside this file)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python"))  # aploss.published: the AP-Loss transcription


def bench_name(variant, cell, threads):
    return "BM_loss/%s/ap/%s/threads:%d" % (variant, sweepdecl.cell_suffix(cell), threads)


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
    """The published algorithm in float32: python/aploss/published.py's transcription (the one
    the tests compare with), imported here so that there is one. Returns (loss, grad)."""
    from aploss.published import ap_loss_published  # python/ (importing it loads no library)
    grad, loss = ap_loss_published(s, t, delta)
    sync()
    return float(loss.item()), grad


def run_cli(args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    return r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", default="build/aploss", help="the aploss command (default build/aploss)")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--sweep", default="default", help="the mode of bench/sweep.json (default default)")
    ap.add_argument("--sweep-file", default=sweepdecl.DEFAULT_PATH, help="the sweep declaration")
    ap.add_argument("--full", action="store_true", help="same as --sweep full")
    ap.add_argument("--reps", type=int, default=None,
                    help="timed calls per cell, median reported (default: the mode's torch_reps)")
    ap.add_argument("--rep-budget-s", type=float, default=None,
                    help="stop repeating a cell once its calls took this long (default: the "
                         "mode's torch_rep_budget_s)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="skip a cell predicted to take longer per call (default: the mode's "
                         "torch_budget_s)")
    ap.add_argument("--ours", default="sorted", help="our variant to compare against (default sorted)")
    ap.add_argument("--filter", default="", help="only cells whose name contains this")
    a = ap.parse_args()
    sweep = "full" if a.full else a.sweep
    sw = sweepdecl.load(a.sweep_file)
    m = sweepdecl.mode(sw, sweep)
    budget = a.budget_s if a.budget_s is not None else float(m["torch_budget_s"])
    reps = a.reps if a.reps is not None else int(m["torch_reps"])
    rep_budget = a.rep_budget_s if a.rep_budget_s is not None else float(m["torch_rep_budget_s"])
    gen = sw["generator"]
    with open(a.sweep_file) as f:
        sweep_text = f.read()

    context = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host_name": socket.gethostname(),
        "cpu_model": cpu_model(),
        "num_cpus": os.cpu_count(),
        "executable": "bench/torch_baseline.py",
        "python": sys.version.split()[0],
        "seed": str(gen["seed"]),
        "sweep": sweep,
        "sweep_file": a.sweep_file,
        "sweep_json": sweep_text,
        "budget_s": "%g" % budget,
        "timed": "the whole loss + gradient call on tensors already in memory (device sync included)",
    }
    todo = [c for c in sweepdecl.cells(sw, sweep)
            if "ap" in c["losses"] and a.filter in bench_name("torch_cpu", c, 1)]
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
        for c in todo:
            name = bench_name("torch_cpu", c, 1)
            results.append({"name": name, "run_name": name, "run_type": "iteration",
                            "error_occurred": True, "error_message": msg, "iterations": 0,
                            "real_time": 0, "cpu_time": 0, "time_unit": "ms",
                            "label": "skip_reason=no_torch"})
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
        for c in todo:
            elements, delta = c["elements"], c["delta"]
            run_cli([a.cli, "gen", "--logits", L, "--targets", T, "--batch", str(c["batch"]),
                     "--anchors", str(c["anchors"]), "--classes", str(gen["classes"]),
                     "--pos-rate", "%.17g" % (c["pos_ppm"] * 1e-6),
                     "--ignore-rate", "%.17g" % gen["ignore_rate"],
                     "--dist", c["dist"], "--seed", str(gen["seed"])])
            ours = json.loads(run_cli([a.cli, "run", "--variant", a.ours, "--logits", L,
                                       "--targets", T, "--delta", "%.17g" % delta,
                                       "--grad-out", G]))
            s_np = np.load(L).reshape(-1)
            t_np = np.load(T).reshape(-1)
            g_ours = np.load(G).reshape(-1).astype(np.float64)
            P, V = ours["positives"], ours["valid_negatives"]
            for vname, dev in devices:
                name = bench_name(vname, c, torch.get_num_threads())
                entry = {"name": name, "run_name": name, "run_type": "aggregate",
                         "aggregate_name": "median", "time_unit": "ms",
                         "positives": P, "valid_negatives": V}
                ops = max(P, 1) * (V + P + 1)
                predicted = sec_per_op.get(dev, 0.0) * ops
                if predicted > budget:
                    entry.update(error_occurred=True, iterations=0, real_time=0, cpu_time=0,
                                 error_message="skipped: predicted %.3g s per call > budget %g s "
                                 "(P = %d, V = %d)" % (predicted, budget, P, V),
                                 label="skip_reason=over_budget; predicted_s=%.6g" % predicted)
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
                    for rep in range(reps):
                        sync()
                        t0, c0 = time.perf_counter(), time.process_time()
                        loss, grad = ap_loss_torch(torch, s, t, delta, sync)
                        times.append(time.perf_counter() - t0)
                        cpu_times.append(time.process_time() - c0)
                        if sum(times) > rep_budget:
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
