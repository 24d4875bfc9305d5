#!/usr/bin/python3
"""torch_baseline.py: the PyTorch baselines, timed on the benchmark's own inputs.

One published algorithm per loss, each the project's one PyTorch transcription of it:
  ap    python/aploss/published.py (docs/SPEC.md): a loop over the positives, batch ranking over
        all elements, pruning below min positive - delta, positives in ascending logit order
        carrying max_prec and the factor;
  alrp  python/aploss/published_alrp.py (docs/SPEC_ALRP.md): the official aLRPLoss loop over
        the positives (ramp over the valid negatives and the positives, L_i, the ranks), then
        the head's localisation ranking; gives grad, grad_e, loss_cls, loss_loc;
  pap   python/aploss/published_pap.py (docs/SPEC_PAP.md): the official dense |S| x |P|
        computation, forward + autograd backward (how it trains), at each K of sweep.json's
        pap.topk axis. Before running, its memory is estimated as |S| * |P| * 4 bytes times
        PAP_MATRICES (float32-sized [|S|, |P|] tensors alive at the peak, measured); a cell
        whose estimate exceeds sweep.json's pap.torch_mem_gb is skipped (skip_reason=too_big,
        mem_estimate_gb in the label and mem_estimate_bytes in the entry).
Inputs come from `aploss gen` (the one generator, seed 12345; with --loss alrp / pap also the
per-positive e / IoU), our results from `aploss run --variant sorted` with the same loss. The
baseline's loss and gradient (aLRP also loss_loc and grad_e) are compared with ours before its
time counts: loss_diff and grad_max_rel_diff are recorded (the SPEC tolerance is 1e-6; float32
torch may be about that far off), and a cell beyond LOSS_TOL / GRAD_TOL is refused
(skip_reason=refused:loss or refused:grad, no time). Timings go to a Google Benchmark-like JSON
(`benchmarks`: name, real_time, time_unit) with the bench binary's names:
BM_loss/torch_cpu/<ap|alrp|pap/topk:K>/elements:M/pos_ppm:R/delta:D/dist:X/threads:T
(T = torch.get_num_threads()). The cells, generator settings and budgets come from
bench/sweep.json (bench/sweep.py), the one declaration of the sweep: every (cell, loss) of the
mode. A cell not timed carries the label "skip_reason=<code>" (no_torch, over_budget;
predicted_s=..., too_big, refused:<what>), as aploss_bench's do.

Run with Debian's python (/usr/bin/python3, python3-torch and python3-numpy from apt):
    /usr/bin/python3 bench/torch_baseline.py --cli build/aploss --out results/X-torch.json
                                             [--sweep default|full|tiny]
Without torch it prints why and writes a JSON whose every cell is skipped (skip_reason=no_torch).
"""
import argparse
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweep as sweepdecl  # noqa: E402  (bench/sweep.py, beside this file)
from torch_step import cpu_model  # noqa: E402  (one CPU-name reader for the bench scripts)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python"))  # aploss.published: the AP-Loss transcription


# float32-sized [|S|, |P|] matrices pap_loss_published holds at its peak, forward + backward:
# ru_maxrss grew by 21.5 x |S| * |P| * 4 bytes on a 40000 x 2000 case (5 control-point rows:
# h, the [|S|, |P|, 6] piece comparisons, int64 piece indices, four gathers, autograd's saved
# tensors); 24 leaves room.
PAP_MATRICES = 24
# Agreement with ours before a time counts: |loss diff| <= LOSS_TOL * max(1, |loss|) and the
# gradient's max |diff| <= GRAD_TOL * max |grad| (float32 torch against our float32 result
# that matches the float64 reference to 1e-6).
LOSS_TOL, GRAD_TOL = 1e-5, 1e-3


def bench_name(variant, loss, cell, threads):
    """loss: 'ap', 'alrp' or 'pap/topk:K' (sweep.loss_names)."""
    return "BM_loss/%s/%s/%s/threads:%d" % (variant, loss, sweepdecl.cell_suffix(cell), threads)


def ap_loss_torch(torch, s, t, delta, sync):
    """The published algorithm in float32: python/aploss/published.py's transcription (the one
    the tests compare with), imported here so that there is one. Returns (loss, grad)."""
    from aploss.published import ap_loss_published  # python/ (importing it loads no library)
    grad, loss = ap_loss_published(s, t, delta)
    sync()
    return float(loss.item()), grad


def alrp_loss_torch(torch, s, t, e, delta, sync):
    """The official aLRP loop (python/aploss/published_alrp.py). Returns (loss_cls, grad,
    loss_loc, grad_e)."""
    from aploss.published_alrp import alrp_loss_published
    grad, grad_e, loss_cls, loss_loc = alrp_loss_published(s, t, e, delta)
    sync()
    return float(loss_cls.item()), grad, float(loss_loc.item()), grad_e


def pap_loss_torch(torch, s, t, iou, ctrl, topk, sync):
    """The official dense PAP (python/aploss/published_pap.py), forward and autograd backward
    as it trains. Returns (loss, grad)."""
    from aploss.published_pap import pap_loss_published
    with torch.enable_grad():
        x = s.detach().requires_grad_(True)
        v = iou.detach().requires_grad_(True)
        loss = pap_loss_published(x, t, v, ctrl, topk)
        loss.backward()
    sync()
    return float(loss.item()), x.grad


def run_case(torch, loss, s, t, aux, ctrl, topk, delta, sync):
    """One call of the loss's baseline: (loss, grad, extra) with extra = (loss_loc, grad_e)
    for alrp, else None."""
    if loss == "ap":
        lv, g = ap_loss_torch(torch, s, t, delta, sync)
        return lv, g, None
    if loss == "alrp":
        lv, g, ll, ge = alrp_loss_torch(torch, s, t, aux, delta, sync)
        return lv, g, (ll, ge)
    lv, g = pap_loss_torch(torch, s, t, aux, ctrl, topk, sync)
    return lv, g, None


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
    # (cell, loss) pairs: every loss of the cell, PAP once per K of the top-K axis.
    todo = [(c, ln) for c in sweepdecl.cells(sw, sweep) for ln in sweepdecl.loss_names(c, sw)
            if a.filter in bench_name("torch_cpu", ln, c, 1)]
    pap_decl = sw.get("pap", {})
    mem_limit = float(pap_decl.get("torch_mem_gb", 8)) * 1e9
    context["pap_params"] = pap_decl.get("params", "retinanet")
    context["pap_torch_mem_gb"] = "%g" % (mem_limit / 1e9)
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
        for c, ln in todo:
            name = bench_name("torch_cpu", ln, c, 1)
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
    ctrl = None
    if any(ln.startswith("pap") for _, ln in todo):
        # The control points from the library beside the CLI (apl_pap_params, the one table).
        lib = os.path.join(os.path.dirname(os.path.abspath(a.cli)), "libaploss.so")
        if os.path.exists(lib):
            os.environ.setdefault("APLOSS_LIBRARY", lib)
        from aploss.torch import _pap_params
        ctrl, _ = _pap_params(context["pap_params"], "cpu")

    def skipped(entry, name, code, msg):
        entry.update(error_occurred=True, iterations=0, real_time=0, cpu_time=0,
                     error_message=msg, label="skip_reason=" + code)
        results.append(entry)
        print("%s: %s" % (name, msg), file=sys.stderr)
        write()

    sec_per_op = {}  # per (device, loss): seconds per unit of work, from the last cell
    with tempfile.TemporaryDirectory(prefix="aploss-torch-") as tmp:
        L, T, G, A, GA = (os.path.join(tmp, f) for f in ("logits.npy", "targets.npy", "grad.npy",
                                                         "aux.npy", "grad_aux.npy"))
        for c, ln in todo:
            elements, delta = c["elements"], c["delta"]
            loss = ln.split("/")[0]
            topk = int(ln.split(":")[1]) if loss == "pap" else 0
            gen_aux = {"ap": [], "alrp": ["--loss", "alrp", "--eloc", A],
                       "pap": ["--loss", "pap", "--iou", A]}[loss]
            run_cli([a.cli, "gen", "--logits", L, "--targets", T, "--batch", str(c["batch"]),
                     "--anchors", str(c["anchors"]), "--classes", str(gen["classes"]),
                     "--pos-rate", "%.17g" % (c["pos_ppm"] * 1e-6),
                     "--ignore-rate", "%.17g" % gen["ignore_rate"],
                     "--dist", c["dist"], "--seed", str(gen["seed"])] + gen_aux)
            run_aux = {"ap": ["--delta", "%.17g" % delta],
                       "alrp": ["--delta", "%.17g" % delta, "--loss", "alrp", "--eloc", A,
                                "--grad-eloc-out", GA],
                       "pap": ["--loss", "pap", "--iou", A, "--params", context["pap_params"],
                               "--topk", str(topk)]}[loss]
            ours = json.loads(run_cli([a.cli, "run", "--variant", a.ours, "--logits", L,
                                       "--targets", T, "--grad-out", G] + run_aux))
            s_np = np.load(L).reshape(-1)
            t_np = np.load(T).reshape(-1)
            aux_np = np.load(A).reshape(-1) if loss != "ap" else None
            g_ours = np.load(G).reshape(-1).astype(np.float64)
            ge_ours = np.load(GA).reshape(-1).astype(np.float64) if loss == "alrp" else None
            P, V = ours["positives"], ours["valid_negatives"]
            if loss == "pap":  # dense: every row of S against every positive
                valid = int(np.count_nonzero(t_np != -1))
                rows = min(topk, valid) if topk > 0 else valid
                ops = rows * max(P, 1)
            else:
                ops = max(P, 1) * (V + P + 1)
            for vname, dev in devices:
                name = bench_name(vname, ln, c, torch.get_num_threads())
                entry = {"name": name, "run_name": name, "run_type": "aggregate",
                         "aggregate_name": "median", "time_unit": "ms",
                         "positives": P, "valid_negatives": V}
                if loss == "pap":
                    entry["topk"] = topk
                    mem = rows * P * 4 * PAP_MATRICES
                    entry["mem_estimate_bytes"] = mem
                    if mem > mem_limit:
                        skipped(entry, name, "too_big; mem_estimate_gb=%.3g" % (mem / 1e9),
                                "skipped: the dense |S| x |P| = %d x %d matrices need about %.3g "
                                "GB (%d float32 matrices at the peak) > %g GB"
                                % (rows, P, mem / 1e9, PAP_MATRICES, mem_limit / 1e9))
                        continue
                predicted = sec_per_op.get((dev, loss), 0.0) * ops
                if predicted > budget:
                    skipped(entry, name, "over_budget; predicted_s=%.6g" % predicted,
                            "skipped: predicted %.3g s per call > budget %g s (P = %d, V = %d)"
                            % (predicted, budget, P, V))
                    continue
                s = torch.from_numpy(s_np).to(dev)
                t = torch.from_numpy(t_np).to(dev)
                aux = torch.from_numpy(aux_np).to(dev) if aux_np is not None else None
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
                        lv, grad, extra = run_case(torch, loss, s, t, aux, ctrl, topk, delta, sync)
                        times.append(time.perf_counter() - t0)
                        cpu_times.append(time.process_time() - c0)
                        if sum(times) > rep_budget:
                            break  # slow cells: fewer calls, recorded in "repetitions"
                med = statistics.median(times)
                if ops > 1e6:
                    sec_per_op[(dev, loss)] = med / ops
                g = grad.double().cpu().numpy()
                gmax = float(np.max(np.abs(g_ours))) if g_ours.size else 0.0
                gerr = float(np.max(np.abs(g - g_ours))) if g_ours.size else 0.0
                grel = gerr / gmax if gmax > 0 else gerr
                loss_diff = abs(lv - ours["loss"])
                entry.update(loss=lv, loss_ours=ours["loss"], loss_diff=loss_diff,
                             grad_max_rel_diff=grel)
                refused = None
                if loss == "alrp":
                    ge = extra[1].double().cpu().numpy()
                    gemax = float(np.max(np.abs(ge_ours))) if ge_ours.size else 0.0
                    geerr = float(np.max(np.abs(ge - ge_ours))) if ge_ours.size else 0.0
                    entry.update(loss_loc=extra[0], loss_loc_ours=ours["loss_loc"],
                                 loss_loc_diff=abs(extra[0] - ours["loss_loc"]),
                                 grad_e_max_rel_diff=geerr / gemax if gemax > 0 else geerr)
                    if entry["loss_loc_diff"] > LOSS_TOL * max(1.0, abs(ours["loss_loc"])):
                        refused = "loss"
                    elif entry["grad_e_max_rel_diff"] > GRAD_TOL:
                        refused = "grad"
                if loss_diff > LOSS_TOL * max(1.0, abs(ours["loss"])):
                    refused = "loss"
                elif grel > GRAD_TOL:
                    refused = refused or "grad"
                if refused:
                    skipped(entry, name, "refused:" + refused,
                            "refused: disagrees with %s: |loss diff| %.3g, grad max rel diff "
                            "%.3g (tolerances %g, %g)" % (a.ours, loss_diff, grel, LOSS_TOL,
                                                         GRAD_TOL))
                    continue
                entry.update(repetitions=len(times), iterations=len(times),
                             real_time=med * 1e3, cpu_time=statistics.median(cpu_times) * 1e3,
                             items_per_second=elements / med,
                             label="loss vs %s: |diff| = %.3g (SPEC tolerance 1e-6); grad max "
                                   "rel diff %.3g" % (a.ours, loss_diff, grel))
                results.append(entry)
                print("%s: %.3f ms (median of %d), P=%d V=%d, |loss diff| %.3g, grad rel diff "
                      "%.3g" % (name, med * 1e3, len(times), P, V, loss_diff, grel),
                      file=sys.stderr)
                write()
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
