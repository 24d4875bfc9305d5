"""Helpers shared by the tests of the Python package (tests/python)."""
import json
import os

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASES = os.path.join(ROOT, "tests", "cases", "ap")


def case_names(loss="ap"):
    """The fixture cases of tests/cases/<loss>, sorted."""
    d = os.path.join(ROOT, "tests", "cases", loss)
    return sorted(n for n in os.listdir(d) if os.path.isdir(os.path.join(d, n)))


def case_array(loss, name, what):
    """tests/cases/<loss>/<name>/<what>.npy as a tensor (its own dtype)."""
    return torch.from_numpy(np.load(os.path.join(ROOT, "tests", "cases", loss, name, what + ".npy")))


def case_meta(loss, name):
    """tests/cases/<loss>/<name>/meta.json."""
    with open(os.path.join(ROOT, "tests", "cases", loss, name, "meta.json")) as f:
        return json.load(f)


def load_case(name):
    """(logits float32 tensor, targets int8 tensor, grad64 float64 tensor, loss64, delta)."""
    d = os.path.join(CASES, name)
    with open(os.path.join(d, "expected.json")) as f:
        exp = json.load(f)
    s = torch.from_numpy(np.load(os.path.join(d, "logits.npy")))
    t = torch.from_numpy(np.load(os.path.join(d, "targets.npy")).astype(np.int8))
    g = torch.from_numpy(np.load(os.path.join(d, "grad_f64.npy")).astype(np.float64))
    return s, t, g.reshape(s.shape), float(exp["loss_f64"]), float(exp["delta"])


def contract_errors(grad, loss, grad64, loss64):
    """(gradient error relative to max |grad64|, absolute loss error): the contract of
    docs/SPEC.md ("Agreement") holds when both are <= 1e-6. With no positives grad64 is all 0
    and the gradient must be exactly 0 (the relative error is then the absolute one)."""
    assert grad.shape == grad64.shape, (grad.shape, grad64.shape)
    g = grad.detach().to(torch.float64).cpu()
    gmax = grad64.abs().max().item() if grad64.numel() else 0.0
    err = (g - grad64).abs().max().item() if g.numel() else 0.0
    rel = err / gmax if gmax > 0 else err
    loss = float(loss.reshape(-1)[0]) if isinstance(loss, torch.Tensor) else float(loss)
    return rel, abs(loss - loss64)


def assert_contract(grad, loss, grad64, loss64, what=""):
    rel, dl = contract_errors(grad, loss, grad64, loss64)
    assert rel <= 1e-6 and dl <= 1e-6, "%s: gradient error %.3g of max |grad64| (bound 1e-6), " \
        "loss error %.3g (bound 1e-6)" % (what, rel, dl)


def average_precision(scores, targets):
    """Exact AP over the whole batch (one ranking, ignored entries left out), the metric the
    loss is 1 minus the smoothed form of: the mean over positives of the precision at their
    rank, scores sorted from high to low."""
    s, t = scores.detach().reshape(-1), targets.reshape(-1)
    keep = t >= 0
    s, t = s[keep], t[keep]
    tp = (t[torch.argsort(s, descending=True)] == 1).to(torch.float64)
    prec = torch.cumsum(tp, 0) / torch.arange(1, tp.numel() + 1, dtype=torch.float64)
    return prec[tp == 1].mean().item()
