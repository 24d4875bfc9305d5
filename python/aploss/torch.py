"""aploss.torch: the exact AP-Loss core of libaploss as a PyTorch loss, on CPU and CUDA tensors.

    import aploss.torch as apl
    loss = apl.ap_loss(logits, targets)          # 0-dim tensor, 1 - AP over the whole batch
    loss.backward()                              # logits.grad = d loss / d logits

Functions
---------
ap_loss(logits, targets, delta=1.0, *, variant="auto", scope="batch", threads=0, group=None)
    AP-Loss (docs/SPEC.md) as a torch.autograd.Function, as the published code computes it: the
    forward pass computes the loss and its error-driven gradient together; backward returns
    grad_output * gradient. Returns a 0-dim tensor (float32; float64 for float64 logits) on the
    logits' device. Works under torch.no_grad, with retain_graph=True, and when called several
    times in one step (the gradients add up).
ap_loss_with_grad(logits, targets, delta=1.0, *, variant="auto", scope="batch", threads=0,
                  group=None)
    (grad, loss) as the published AP_loss(logits, targets) returns them: grad shaped like
    logits (in the logits' dtype), loss of shape [1]. No autograd: for code that calls the
    published function directly.
alrp_loss(logits, targets, eloc, delta=1.0, *, variant="auto", scope="batch", threads=0)
    aLRP Loss (docs/SPEC_ALRP.md): (loss_cls, loss_loc), two 0-dim tensors with autograd:
    loss_cls to the logits, loss_loc to eloc (one localisation error per positive, in the flat
    order of the positives). alrp_loss_with_grad returns (grad, grad_eloc, loss_cls, loss_loc).
    CPU rows implementing aLRP: see variants("alrp") (auto: the first non-quadratic one, else
    the first).
pap_loss(logits, targets, iou, params="retinanet", topk=100000, *, variant="auto", threads=0)
    Parameterized AP Loss (docs/SPEC_PAP.md): a 0-dim tensor with autograd to the logits and to
    iou (one IoU in [0, 1] per positive, in the flat order of the positives). params: a shipped
    set ("retinanet", "rpn", "rcnn") or a tensor of shape (5, 12) or (4, 12), rows H2 I2 I3 I1
    [H1], each x0 y0 .. x5 y5 (rounded to float32, as the official heads hold them). topk: the
    K >= 1 largest valid logits are ranked (100000, the published setting), 0 = every valid
    entry. One ranking over the whole tensor (no scope). CPU rows: see variants("pap").
variants(loss="ap", device=None)
    The names ap_loss accepts for `variant=`: the rows of the library's variant table that
    implement the loss and can run here (on `device`, "cpu" or "cuda", when given).
reference(logits, targets, delta=1.0)
    The library's double-precision reference of the contract (slow: O(|P| M)), as
    (grad float64, loss float): what the tests compare against.

Arguments
---------
logits   float32 tensor of any shape, e.g. [batch, anchors, classes], ranked as one flat array
         (its row-major order). float16 and bfloat16 (and float64) are accepted: the loss is
         computed in float32 and the gradient is returned in the logits' dtype. Non-contiguous
         tensors are copied to a contiguous float32 buffer first; a contiguous float32 tensor is
         passed to the library without a copy. Every value must be finite.
targets  a tensor of the same shape and device, of any integer, floating or bool dtype, holding
         -1 (ignore), 0 (negative) or 1 (positive). int8 targets are passed without a copy.
delta    the ramp half-width, a finite number in [2^-100, 2^100] (default 1.0).
variant  "auto" (CPU: sorted, the fastest exact CPU row; CUDA: cuda_sorted), or the name of
         any row of the variant table (`build/aploss list`) that implements the loss and runs
         on the tensor's device: CPU rows for CPU tensors, GPU rows for CUDA tensors.
scope    "batch": one ranking over every element (the published behaviour). "image": each
         slice along the first dimension is ranked on its own and the loss is the mean of the
         per-image losses (an image without positives contributes 0); the gradient is each
         image's gradient divided by the number of images, so it is the gradient of that mean.
threads  CPU threads for threaded variants; 0 (default) = the library's default
         (OMP_NUM_THREADS if set, else every core). Ignored on CUDA.
group    None (default): no distribution. A torch.distributed process group (e.g.
         torch.distributed.group.WORLD) with scope="batch": the batch is the concatenation of
         every process's flattened inputs in rank order, ranked exactly as one process would
         rank it (variant "auto" or "sorted"; the same delta everywhere), with O(|P|) traffic:
         the loss is the same on every process and each process's gradient for its own
         elements equals the one-process `sorted` result bit for bit. A bad input on one
         process raises there and makes every other process raise (naming the failing rank).
         gloo on CPU tensors is tested; NCCL on CUDA tensors is not (no GPU here). With
         scope="image" nothing is communicated. Details, timeout and traffic: aploss.dist.

CUDA tensors run the variant's device entry point on torch.cuda.current_stream() of the
tensors' device: the data stays on the GPU (only the loss, a few counters and the validity flag
cross to the host).

Errors
------
TypeError   logits or targets not a tensor, logits not floating point, targets complex,
            delta or threads of the wrong type.
ValueError  the shapes differ, the tensors are on different devices, delta outside
            [2^-100, 2^100] (0, negative, NaN, inf), a non-finite logit, a target other than
            -1/0/1, an unknown variant or one that cannot run on the tensor's device (the
            message lists the choices), an unknown scope, threads < 0. Messages name the tensor
            and element, in the words of the `aploss` command, e.g.
            "targets[1043] (index (0, 13, 3)) = 3: expected -1, 0 or 1".
RuntimeError a failure inside the library (out of memory, a CUDA error).
Nothing passed in is modified.
"""
import ctypes
import math
import numbers
import re

import torch

from . import _lib

__all__ = ["ap_loss", "ap_loss_with_grad", "alrp_loss", "alrp_loss_with_grad", "pap_loss",
           "variants", "reference"]

# The fastest exact row per device for each loss (measured: README, "Variants").
_AUTO = {("ap", "cpu"): "sorted", ("ap", "cuda"): "cuda_sorted"}
_TABLE = None


def _table():
    global _TABLE
    if _TABLE is None:
        _TABLE = _lib.variants()
    return _TABLE


def variants(loss="ap", device=None):
    """Names usable as `variant=` for `loss` ("ap", "alrp", "pap") on `device` ("cpu",
    "cuda" or None for both), in table order, "auto" first; [] when none can run here."""
    dev = None if device is None else torch.device(device).type
    names = [v.name for v in _table()
             if loss in v.losses and v.runnable and (dev is None or v.device == dev)]
    return ["auto"] + names if names else []


def _choose(variant, loss, device):
    """The table row to run: `variant` by name, or auto; ValueError listing the choices."""
    dev = device.type
    if dev not in ("cpu", "cuda"):
        raise ValueError("logits are on device %s: aploss runs on cpu and cuda tensors" % device)
    if not isinstance(variant, str):
        raise TypeError("variant: expected a str, got %s" % type(variant).__name__)
    table = _table()
    if variant == "auto":
        want = _AUTO.get((loss, dev))
        rows = [v for v in table if v.name == want and v.runnable]
        rows += [v for v in table if loss in v.losses and v.device == dev and v.runnable
                 and not v.quadratic]
        rows += [v for v in table if loss in v.losses and v.device == dev and v.runnable]
        if rows:
            return rows[0]
        why = "no variant of loss %s runs on %s here" % (loss, dev)
    else:
        rows = [v for v in table if v.name == variant]
        if not rows:
            why = "variant %r: unknown" % variant
        elif loss not in rows[0].losses:
            why = "variant %r: does not implement loss %s" % (variant, loss)
        elif rows[0].device != dev:
            why = "variant %r runs on %s tensors, logits are on %s" % (variant, rows[0].device,
                                                                         device)
        elif not rows[0].runnable:
            why = "variant %r cannot run here: %s" % (variant, rows[0].why_not)
        else:
            return rows[0]
    choices = variants(loss, dev)
    others = [v.name for v in table if v.name not in choices]
    raise ValueError("%s; choices for loss %s on %s: %s%s" % (
        why, loss, dev, ", ".join(choices),
        " (not usable here: %s)" % ", ".join(others) if others else ""))


# ---- input checks (the CLI's rules and words) ----

def _where(i, shape):
    """' (index (a, b, c))' for flat index i of a tensor of `shape`, when it has 2+ dims."""
    if len(shape) < 2:
        return ""
    idx = []
    for d in reversed(shape):
        idx.append(i % d)
        i //= d
    return " (index (%s))" % ", ".join(str(x) for x in reversed(idx))


def _fmt(x):
    return "%g" % x if isinstance(x, float) else str(x)


def _check_args(logits, targets, delta, threads, scope):
    if not isinstance(logits, torch.Tensor):
        raise TypeError("logits: expected a torch.Tensor, got %s" % type(logits).__name__)
    if not isinstance(targets, torch.Tensor):
        raise TypeError("targets: expected a torch.Tensor, got %s" % type(targets).__name__)
    if not logits.is_floating_point():
        raise TypeError("logits: dtype %s: expected a floating dtype (float32; float16, "
                        "bfloat16 and float64 are computed in float32)" % logits.dtype)
    if targets.is_complex():
        raise TypeError("targets: dtype %s: expected an integer, floating or bool dtype "
                        "holding -1, 0 or 1" % targets.dtype)
    if targets.shape != logits.shape:
        raise ValueError("targets: shape %s does not match the shape of logits %s"
                         % (list(targets.shape), list(logits.shape)))
    if targets.device != logits.device:
        raise ValueError("targets are on %s but logits are on %s: both must be on the same "
                         "device" % (targets.device, logits.device))
    if isinstance(delta, torch.Tensor) and delta.numel() == 1:
        delta = delta.item()
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
        raise TypeError("delta: expected a real number, got %s" % type(delta).__name__)
    delta = float(delta)
    err = _lib.Error()
    if _lib.lib.apl_check_inputs(None, None, 0, delta, ctypes.byref(err)) != _lib.APL_OK:
        raise ValueError(_lib.message(err))
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
        raise TypeError("threads: expected an int, got %s" % type(threads).__name__)
    if threads < 0:
        raise ValueError("threads = %d: expected 0 (the library's default) or more" % threads)
    if scope not in ("batch", "image"):
        raise ValueError("scope = %r: expected 'batch' or 'image'" % (scope,))
    if scope == "image" and logits.dim() == 0:
        raise ValueError("scope='image' ranks each slice along the first dimension: logits "
                         "have none (0-dim)")
    return delta


def _bad_target(targets, flat_index):
    i = int(flat_index)
    v = targets.reshape(-1)[i].item()
    return ValueError("targets[%d]%s = %s: expected -1, 0 or 1"
                      % (i, _where(i, targets.shape), _fmt(v)))


def _targets_int8(targets):
    """targets as a contiguous flat int8 tensor, refusing values that int8 would change
    (0.5, 257, NaN): those are named here; -1/0/1 range checks on int8 are the library's
    (CPU) or _check_device's (CUDA)."""
    if targets.dtype == torch.int8:
        return targets.detach().contiguous().reshape(-1)
    t = targets.detach()
    t8 = t.to(torch.int8)
    if t.dtype != torch.bool:
        changed = t8 != t
        if bool(changed.any()):
            raise _bad_target(targets, changed.reshape(-1).nonzero()[0, 0])
    return t8.contiguous().reshape(-1)


def _logits_f32(logits):
    return logits.detach().to(torch.float32).contiguous().reshape(-1)


def _bad_logit(logits, i):
    i = int(i)
    v = logits.reshape(-1)[i].item()
    if math.isfinite(v):  # a finite float64 beyond float32's range
        return ValueError("logits[%d]%s = %s: outside the float32 range the loss is computed "
                          "in (|x| <= 3.4e38)" % (i, _where(i, logits.shape), _fmt(v)))
    return ValueError("logits[%d]%s = %s: logits must be finite"
                      % (i, _where(i, logits.shape), _fmt(v)))


def _check_device(s, t8):
    """The library's input checks (apl_check_inputs) done on the device for CUDA tensors, whose
    device entry points do not read the data on the host: two flags cross the bus. Returns
    None, or ("logits" | "targets", the first offending flat index in s / t8)."""
    bad_s = ~torch.isfinite(s)
    bad_t = (t8 < -1) | (t8 > 1)
    flags = torch.stack([bad_s.any(), bad_t.any()]).cpu()
    if bool(flags[0]):
        return "logits", int(bad_s.nonzero()[0, 0])
    if bool(flags[1]):
        return "targets", int(bad_t.nonzero()[0, 0])
    return None


def _library_error(code, msg, logits, targets, offset=0):
    """A library failure as a Python exception; element messages get the full-tensor index."""
    m = re.match(r"^(logits|targets)\[(\d+)\]", msg)
    if m:
        i = int(m.group(2)) + offset
        if m.group(1) == "logits":
            return _bad_logit(logits, i)
        return _bad_target(targets, i)
    if code in (_lib.APL_ERR_ARG, _lib.APL_ERR_INPUT):
        return ValueError(msg)
    return RuntimeError("aploss: %s: %s" % (_lib.STATUS_NAMES[code] if 0 <= code < len(
        _lib.STATUS_NAMES) else code, msg))


def _run(row, loss, s, t8, delta, threads, logits, targets, offset=0, aux=None, want_aux=False,
         aux_offset=0, aux_name="aux", params=None, param_rows=0, topk=0):
    """One library call on flat contiguous float32 logits `s` and int8 targets `t8` (same
    device): returns (grad float32 flat, grad_aux float32 or None, apl_result). `aux` is the
    per-positive float32 input of aLRP (e) and PAP (IoU). `logits`, `targets` and `offset` (of
    `s` in the flattened logits) only word the error messages. The shared path of every loss
    of this module. PAP: `params` (float32, param_rows x 12, contiguous, on s's device) and
    `topk` (0 = every valid entry)."""
    n = s.numel()
    grad = torch.empty(n, dtype=torch.float32, device=s.device)
    grad_aux = None
    if want_aux and aux is not None:
        grad_aux = torch.empty(aux.numel(), dtype=torch.float32, device=s.device)
    p = _lib.Problem(loss=_lib.LOSSES[loss], logits=s.data_ptr() if n else None,
                     targets=t8.data_ptr() if n else None, n=n, delta=delta,
                     threads=threads)
    if aux is not None:
        p.aux = aux.data_ptr() if aux.numel() else None
        p.n_aux = aux.numel()
    if params is not None:
        p.params, p.param_rows, p.topk = params.data_ptr(), param_rows, topk
    out = _lib.Output(grad=grad.data_ptr() if n else None,
                      grad_aux=grad_aux.data_ptr() if grad_aux is not None and grad_aux.numel()
                      else None)
    res, err = _lib.Result(), _lib.Error()
    if row.device == "cpu":
        st = _lib.lib.apl_run(row.row, ctypes.byref(p), ctypes.byref(out), ctypes.byref(res),
                              ctypes.byref(err))
    else:
        bad = _check_device(s, t8) if n else None
        if bad is not None:
            what, i = bad
            raise (_bad_logit(logits, offset + i) if what == "logits"
                   else _bad_target(targets, offset + i))
        if aux is not None:
            npos = int((t8 == 1).sum()) if n else 0
            if aux.numel() != npos:
                raise ValueError("%s has %d values: expected one per positive (%d)"
                                 % (aux_name, aux.numel(), npos))
            bad_a = ~torch.isfinite(aux) | (aux < 0)
            if loss == "pap":
                bad_a |= aux > 1
            if bool(bad_a.any()):
                k = int(bad_a.nonzero()[0, 0])
                raise ValueError("%s[%d] = %g: expected a finite value %s"
                                 % (aux_name, aux_offset + k, aux[k].item(),
                                    "in [0, 1]" if loss == "pap" else ">= 0"))
        with torch.cuda.device(s.device):
            p.stream = torch.cuda.current_stream(s.device).cuda_stream or None
            st = row.device_fn(ctypes.byref(p), ctypes.byref(out), ctypes.byref(res),
                               ctypes.byref(err))
    if st != _lib.APL_OK:
        msg = _lib.message(err)
        m = re.match(r"^(?:eloc|iou)\[(\d+)\]", msg)
        if m:  # the library's aux messages index this call's slice
            msg = "%s[%d]%s" % (aux_name, int(m.group(1)) + aux_offset, msg[m.end():])
        raise _library_error(st, msg, logits, targets, offset)
    return grad, grad_aux, res


def _check_aux(aux, name, logits):
    if not isinstance(aux, torch.Tensor):
        raise TypeError("%s: expected a torch.Tensor, got %s" % (name, type(aux).__name__))
    if not aux.is_floating_point():
        raise TypeError("%s: dtype %s: expected a floating dtype" % (name, aux.dtype))
    if aux.device != logits.device:
        raise ValueError("%s is on %s but logits are on %s: both must be on the same device"
                         % (name, aux.device, logits.device))
    if aux.dim() > 1:
        raise ValueError("%s: shape %s: expected one value per positive, 1-D (flat order of "
                         "the positives)" % (name, list(aux.shape)))


def _forward(loss, logits, targets, delta, variant, scope, threads, aux=None, aux_name=None,
             **pap):
    """The shared forward of every loss: checks, one library call per scope unit. Returns
    (grad in logits' dtype and shape, grad_aux in aux's dtype or None, loss, loss_loc) with the
    losses as Python floats; with scope="image" the losses are per-image means and the
    gradients are divided by the number of images."""
    delta = _check_args(logits, targets, delta, threads, scope)
    if aux is not None:
        _check_aux(aux, aux_name, logits)
    row = _choose(variant, loss, logits.device)
    s = _logits_f32(logits)
    t8 = _targets_int8(targets)
    a = None if aux is None else aux.detach().to(torch.float32).contiguous().reshape(-1)
    if scope == "batch":
        units = [(0, s.numel(), 0, None if a is None else a.numel())]
    else:
        images = logits.shape[0]
        per = s.numel() // images if images else 0
        counts = [0] * images
        if a is not None and per:  # each image's share of the positives' aux values
            counts = (t8.reshape(images, per) == 1).sum(dim=1).tolist()
            if sum(counts) != a.numel():
                raise ValueError("%s has %d values: expected one per positive (%d)"
                                 % (aux_name, a.numel(), sum(counts)))
        starts = [sum(counts[:b]) for b in range(images)]
        units = [(b * per, (b + 1) * per, starts[b], starts[b] + counts[b])
                 for b in range(images)]
    grad = torch.empty_like(s)
    grad_aux = None if a is None else torch.empty_like(a)
    total, total_loc = 0.0, 0.0
    for lo, hi, alo, ahi in units:
        g, ga, res = _run(row, loss, s[lo:hi], t8[lo:hi], delta, threads, logits, targets,
                          offset=lo, aux=None if a is None else a[alo:ahi],
                          want_aux=a is not None, aux_offset=alo, aux_name=aux_name, **pap)
        grad[lo:hi] = g
        if ga is not None:
            grad_aux[alo:ahi] = ga
        total += res.loss
        total_loc += res.loss_loc
    if scope == "image":
        k = len(units)
        if k:
            grad /= k
            if grad_aux is not None:
                grad_aux /= k
        total, total_loc = (total / k, total_loc / k) if k else (0.0, 0.0)
    grad = grad.reshape(logits.shape).to(logits.dtype)
    if grad_aux is not None:
        grad_aux = grad_aux.reshape(aux.shape).to(aux.dtype)
    return grad, grad_aux, total, total_loc


def _ap_grad_loss(logits, targets, delta, variant, scope, threads, group=None):
    """(grad in logits' dtype and shape, loss as a Python float). A process group with
    scope="batch" ranks the batch across the group's processes (aploss.dist)."""
    if group is not None and scope == "batch":
        from . import dist
        return dist.ap_grad_loss(logits, targets, delta, group=group, variant=variant,
                                 threads=threads)
    grad, _, loss, _ = _forward("ap", logits, targets, delta, variant, scope, threads)
    return grad, loss


def _loss_dtype(logits):
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


class _APLoss(torch.autograd.Function):
    """forward: loss and gradient together (the library); backward: grad_output * gradient."""

    @staticmethod
    def forward(ctx, logits, targets, delta, variant, scope, threads, group):
        grad, loss = _ap_grad_loss(logits, targets, delta, variant, scope, threads, group)
        ctx.save_for_backward(grad)
        return torch.tensor(loss, dtype=_loss_dtype(logits), device=logits.device)

    @staticmethod
    def backward(ctx, grad_output):
        grad, = ctx.saved_tensors
        return grad_output * grad, None, None, None, None, None, None


def ap_loss(logits, targets, delta=1.0, *, variant="auto", scope="batch", threads=0,
            group=None):
    """AP-Loss of `logits` against `targets` as a 0-dim tensor with autograd (see the module
    docstring for the arguments, errors and dtypes; `group` there and in aploss.dist)."""
    return _APLoss.apply(logits, targets, delta, variant, scope, threads, group)


def ap_loss_with_grad(logits, targets, delta=1.0, *, variant="auto", scope="batch", threads=0,
                      group=None):
    """(grad, loss) as the published AP_loss returns them: grad like logits (its dtype and
    shape), loss a tensor of shape [1]. No autograd."""
    grad, loss = _ap_grad_loss(logits, targets, delta, variant, scope, threads, group)
    return grad, torch.tensor([loss], dtype=_loss_dtype(logits), device=logits.device)


class _ALRPLoss(torch.autograd.Function):
    """forward: both aLRP losses and both gradients (the library); backward: grad_output of
    loss_cls times d loss_cls / d logits, grad_output of loss_loc times d loss_loc / d eloc."""

    @staticmethod
    def forward(ctx, logits, targets, eloc, delta, variant, scope, threads):
        grad, grad_e, lc, ll = _forward("alrp", logits, targets, delta, variant, scope, threads,
                                        aux=eloc, aux_name="eloc")
        ctx.save_for_backward(grad, grad_e)
        dt = _loss_dtype(logits)
        return (torch.tensor(lc, dtype=dt, device=logits.device),
                torch.tensor(ll, dtype=dt, device=logits.device))

    @staticmethod
    def backward(ctx, go_cls, go_loc):
        grad, grad_e = ctx.saved_tensors
        return go_cls * grad, None, go_loc * grad_e, None, None, None, None


def alrp_loss(logits, targets, eloc, delta=1.0, *, variant="auto", scope="batch", threads=0):
    """aLRP Loss (docs/SPEC_ALRP.md): (loss_cls, loss_loc), two 0-dim tensors with autograd.
    `eloc` holds one localisation error e >= 0 per positive, in the flat order of the positives
    (eloc[k] belongs to the k-th element with target 1), e.g. 1 - IoU of the k-th positive's
    box, computed from the regression output so that loss_loc's gradient reaches it. loss_cls
    gives the logits their gradient; loss_loc gives eloc its gradient (d loss_loc / d e, ranks
    held constant) and none to the logits, as in the official code. Arguments, dtypes, scopes
    and errors as ap_loss; eloc may be float16/bfloat16/float32/float64 on the logits' device."""
    return _ALRPLoss.apply(logits, targets, eloc, delta, variant, scope, threads)


def alrp_loss_with_grad(logits, targets, eloc, delta=1.0, *, variant="auto", scope="batch",
                        threads=0):
    """(grad, grad_eloc, loss_cls, loss_loc): the gradients in the inputs' dtypes and shapes,
    the losses as tensors of shape [1]. No autograd."""
    grad, grad_e, lc, ll = _forward("alrp", logits, targets, delta, variant, scope, threads,
                                    aux=eloc, aux_name="eloc")
    dt = _loss_dtype(logits)
    return (grad, grad_e, torch.tensor([lc], dtype=dt, device=logits.device),
            torch.tensor([ll], dtype=dt, device=logits.device))


def _pap_params(params, device):
    """(float32 control points, contiguous on `device`, rows) from a shipped set's name or a
    tensor; ValueError/TypeError naming params and the offending point."""
    err = _lib.Error()
    if isinstance(params, str):
        ptr, rows = ctypes.POINTER(ctypes.c_float)(), ctypes.c_int()
        if _lib.lib.apl_pap_params(params.encode(), ctypes.byref(ptr), ctypes.byref(rows),
                                   ctypes.byref(err)) != _lib.APL_OK:
            raise ValueError("params = %r: expected 'retinanet', 'rpn', 'rcnn' or a tensor of "
                             "shape (5, 12) or (4, 12)" % params)
        c = torch.tensor(ptr[:rows.value * 12], dtype=torch.float32).reshape(rows.value, 12)
    elif isinstance(params, torch.Tensor):
        if not params.is_floating_point():
            raise TypeError("params: dtype %s: expected a floating dtype (the control points "
                            "are used rounded to float32)" % params.dtype)
        if params.dim() != 2 or params.shape[1] != 12 or params.shape[0] not in (4, 5):
            raise ValueError("params: shape %s: expected (5, 12) or (4, 12) (rows H2 I2 I3 I1 "
                             "[H1], each x0 y0 .. x5 y5)" % list(params.shape))
        c = params.detach().to(device="cpu", dtype=torch.float32).contiguous()
        if _lib.lib.apl_check_pap_params(c.data_ptr(), c.shape[0],
                                         ctypes.byref(err)) != _lib.APL_OK:
            raise ValueError("params: %s" % _lib.message(err))
    else:
        raise TypeError("params: expected 'retinanet', 'rpn', 'rcnn' or a torch.Tensor, got %s"
                        % type(params).__name__)
    return c.to(device), c.shape[0]


def _pap_topk(topk):
    if isinstance(topk, bool) or not isinstance(topk, numbers.Real):
        raise TypeError("topk: expected an int, got %s" % type(topk).__name__)
    if not (math.isfinite(topk) and topk == int(topk) and topk >= 0):
        raise ValueError("topk = %s: expected an integer K >= 1, or 0 to rank every valid entry"
                         % _fmt(topk))
    return int(topk)


def _pap_forward(logits, targets, iou, params, topk, variant, threads):
    """(grad like logits, grad_iou like iou, loss float) of PAP, after its own checks."""
    topk = _pap_topk(topk)
    c, rows = None, 0  # _forward refuses logits that are not tensors
    if isinstance(logits, torch.Tensor):
        _check_aux(iou, "iou", logits)
        v = iou.detach().reshape(-1)
        bad = ~torch.isfinite(v) | (v < 0) | (v > 1)  # before float32 rounds 1 + 1e-9 to 1
        if v.numel() and bool(bad.any()):
            k = int(bad.nonzero()[0, 0])
            raise ValueError("iou[%d] = %s: expected a finite value in [0, 1]"
                             % (k, _fmt(v[k].item())))
        c, rows = _pap_params(params, logits.device)
    grad, grad_iou, loss, _ = _forward("pap", logits, targets, 1.0, variant, "batch", threads,
                                       aux=iou, aux_name="iou", params=c, param_rows=rows,
                                       topk=topk)
    return grad, grad_iou, loss


class _PAPLoss(torch.autograd.Function):
    """forward: the PAP loss and both gradients (the library); backward: grad_output times
    d loss / d logits and d loss / d iou."""

    @staticmethod
    def forward(ctx, logits, targets, iou, params, topk, variant, threads):
        grad, grad_iou, loss = _pap_forward(logits, targets, iou, params, topk, variant, threads)
        ctx.save_for_backward(grad, grad_iou)
        return torch.tensor(loss, dtype=_loss_dtype(logits), device=logits.device)

    @staticmethod
    def backward(ctx, go):
        grad, grad_iou = ctx.saved_tensors
        return go * grad, None, go * grad_iou, None, None, None, None


def pap_loss(logits, targets, iou, params="retinanet", topk=100000, *, variant="auto",
             threads=0):
    """Parameterized AP Loss (docs/SPEC_PAP.md) as a 0-dim tensor with autograd to `logits` and
    `iou`. `iou` holds one IoU in [0, 1] per positive, in the flat order of the positives
    (iou[k] belongs to the k-th element with target 1; the official heads pass (GIoU + 1) / 2).
    `params`: "retinanet", "rpn", "rcnn" (the official configs) or a (5, 12) / (4, 12) tensor of
    control points; `topk`: rank the K largest valid logits (0: all of them). The whole tensor
    is one ranking. Dtypes, variant, threads and errors as ap_loss; iou may be any floating
    dtype on the logits' device."""
    return _PAPLoss.apply(logits, targets, iou, params, topk, variant, threads)


def reference(logits, targets, delta=1.0):
    """The contract computed by the library's double-precision reference (apl_reference, O(|P|
    M), CPU): (grad float64 tensor shaped like logits, loss float). For checking, not training."""
    delta = _check_args(logits, targets, delta, 0, "batch")
    s = _logits_f32(logits).cpu()
    t8 = _targets_int8(targets).cpu()
    n = s.numel()
    g = torch.empty(n, dtype=torch.float64)
    p = _lib.Problem(loss=_lib.LOSSES["ap"], logits=s.data_ptr() if n else None,
                     targets=t8.data_ptr() if n else None, n=n, delta=delta)
    res, err = _lib.Result(), _lib.Error()
    st = _lib.lib.apl_check_problem(ctypes.byref(p), ctypes.byref(err))
    if st == _lib.APL_OK:
        st = _lib.lib.apl_reference(ctypes.byref(p), g.data_ptr() if n else None, None,
                                    ctypes.byref(res), ctypes.byref(err))
    if st != _lib.APL_OK:
        raise _library_error(st, _lib.message(err), logits, targets)
    return g.reshape(logits.shape), res.loss
