"""aploss.dist: exact AP-Loss over a batch split across processes (torch.distributed), with
O(|P|) traffic per process. Used through aploss.torch.ap_loss(..., group=G); this module holds the
driver, the traffic count and the gather-everything alternative the benchmark compares with.

    import torch.distributed as dist, aploss.torch as apl
    dist.init_process_group("gloo", ...)                 # one process per part of the batch
    loss = apl.ap_loss(local_logits, local_targets, group=dist.group.WORLD)
    loss.backward()                                      # local_logits.grad: this part's gradient

What every process does (include/aploss/phases.h describes the phases):
  1. checks its own inputs (the usual checks and messages), then one all_gather of a 5-word
     header: its error flag, its number of positives, its delta, its global rank, its number of
     elements. Every process sees every flag: if one failed, it raises its own error and every
     other raises RuntimeError naming the failing rank and its message (an all_gather_object of
     the messages, on this error path only). No process goes on to a collective the others skip.
  2. all_gather of its positives' logits, padded to the largest count of the group; the
     concatenation is sorted (ascending float order, as `sorted` sorts them), so the order of
     the processes and ties among positives of different processes do not matter: the plan is
     built from the sorted values alone, and apply gives tied positives the same gradient.
  3. apl_sorted_plan_create, apl_sorted_histogram of its own elements into int64 words, one
     all_reduce(SUM) of them (exact integer sums: any reduction order gives the same bits), with
     one more word per process as a second error flag (a failure in the plan or the histogram,
     e.g. out of memory, again raises everywhere).
  4. apl_sorted_finish_ap (the loss: the same on every process) and apl_sorted_apply to its own
     elements (its gradient).
The loss and every gradient bit equal those of the `sorted` variant (ap_loss's CPU default) on
the concatenation of the processes' flattened inputs in rank order, whatever the split (unequal
parts, a process without positives or without elements). When the positives lie outside the
segment algorithm's range (span above 4096 delta, |s| above 2^24 delta), `sorted` hands the call
to `pruned`, and so does this driver, after gathering every logit and target (O(N) traffic; it
then still matches the one-process result bit for bit).

Requirements, documented rather than negotiated:
  * every process of the group calls ap_loss(group=G) the same number of times in the same
    order (as for any collective), with scope="batch". delta must be the same everywhere: it is
    compared (its bits travel in the header) and a mismatch raises ValueError on every process.
    variant must be "auto" or "sorted" (this driver runs sorted's phases); refused locally
    otherwise, which the error check turns into an error on every process.
  * scope="image" with a group communicates nothing: each process ranks its own images, exactly
    as without a group (loss = the mean over its images; DDP's gradient averaging over equal
    parts then gives the gradient of the mean over all images).
  * timeout: a process whose inputs are bad raises at once and makes the others raise (step 1).
    A process that never calls ap_loss (it crashed or took another branch) leaves the others
    waiting in a collective until the group's timeout: init_process_group(timeout=...) or
    new_group(timeout=...), 30 minutes by default in torch 1.13; then torch raises there.
  * backends: gloo with CPU tensors (tested). CUDA tensors use the logits' device for every
    collective tensor (header, positives, histogram), as NCCL needs; the phases themselves run
    on the host, so the local logits and targets are copied to the host and the gradient back
    (O(local N) over the bus per call, no GPU phase kernels yet). NCCL and CUDA tensors are
    UNTESTED here (no GPU on the machine this was written on).

Traffic (last_traffic()): the bytes this process handed to the collectives of its last call:
  header 40 + positives 4 max_r |P_r| + histogram 8 (6 |P| + processes): O(|P|), independent of
the number of anchors. (What a backend moves on the wire depends on its algorithm: a ring
all_gather forwards each part processes - 1 times.) The alternative (method="gather") sends 40 +
5 max_r N_r (every float32 logit and int8 target).
"""
import ctypes
import struct

import torch
import torch.distributed as dist

from . import _lib
from . import torch as _apt

__all__ = ["ap_grad_loss", "last_traffic"]

_HEADER = 5  # failed, positives, delta bits, global rank, elements
_last = {}


def last_traffic():
    """{"method", "bytes_sent", "parts": {name: bytes}, "processes", "positives", "elements"}
    of this process's last distributed call ({} before the first)."""
    return dict(_last, parts=dict(_last.get("parts", {})))


def _delta_bits(delta):
    return struct.unpack("<q", struct.pack("<d", delta))[0]


def _delta_of(bits):
    return struct.unpack("<d", struct.pack("<q", bits))[0]


def _check_group(group):
    if not dist.is_available() or not dist.is_initialized():
        raise ValueError("group: torch.distributed is not initialized (call "
                         "torch.distributed.init_process_group first), or pass group=None")
    if dist.get_rank(group) < 0:
        raise ValueError("group: this process (rank %d) is not a member of the group"
                         % dist.get_rank())


def _fail_everywhere(local_exc, failed, group):
    """Every process of the group calls this when any failed (all know it from the same
    collective): the failing ones raise their own exception, the others a RuntimeError with the
    first failing rank's message. failed: the global ranks that failed."""
    world = dist.get_world_size(group)
    msgs = [None] * world
    mine = None if local_exc is None else "%s: %s" % (type(local_exc).__name__, local_exc)
    try:
        dist.all_gather_object(msgs, (dist.get_rank(), mine), group=group)
    except Exception:  # the messages are a courtesy; the ranks are known anyway
        msgs = []
    if local_exc is not None:
        raise local_exc
    why = dict(m for m in msgs if m and m[1])
    raise RuntimeError("aploss: ap_loss(group=...) failed on rank %s of the process group%s; "
                       "this process (rank %d) raises too" % (
                           ", ".join(str(r) for r in failed),
                           " (%s)" % why[failed[0]] if failed[0] in why else "",
                           dist.get_rank()))


def _all_gather(t, group):
    out = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, t, group=group)
    return out


def _prepare(logits, targets, delta, variant, threads):
    """The local checks and the host copies: (delta, s, t8 on the host, flat)."""
    delta = _apt._check_args(logits, targets, delta, threads, "batch")
    if variant not in ("auto", "sorted"):
        raise ValueError("variant %r: ap_loss with a process group runs the phases of `sorted`: "
                         "expected 'auto' or 'sorted'" % (variant,))
    if logits.device.type not in ("cpu", "cuda"):
        raise ValueError("logits are on device %s: aploss runs on cpu and cuda tensors"
                         % logits.device)
    s = _apt._logits_f32(logits).cpu()
    t8 = _apt._targets_int8(targets).cpu()
    n = s.numel()
    err = _lib.Error()
    st = _lib.lib.apl_check_inputs(s.data_ptr() if n else None, t8.data_ptr() if n else None,
                                   n, delta, ctypes.byref(err))
    if st != _lib.APL_OK:
        raise _apt._library_error(st, _lib.message(err), logits, targets)
    return delta, s, t8


def ap_grad_loss(logits, targets, delta=1.0, *, group, variant="auto", threads=0,
                 method="histogram"):
    """(grad shaped like logits in its dtype, loss float) of AP-Loss over the concatenation of
    every process's flattened (logits, targets) in rank order; see the module docstring.
    method: "histogram" (O(|P|) traffic, the default and what ap_loss uses) or "gather" (every
    logit and target all-gathered, `sorted` run on the whole batch everywhere: the alternative
    the benchmark compares with). No autograd: aploss.torch.ap_loss wraps this."""
    if method not in ("histogram", "gather"):
        raise ValueError("method = %r: expected 'histogram' or 'gather'" % (method,))
    _check_group(group)
    world = dist.get_world_size(group)
    me = dist.get_rank(group)
    dev = logits.device if isinstance(logits, torch.Tensor) else torch.device("cpu")
    local_exc, s, t8 = None, None, None
    try:
        delta, s, t8 = _prepare(logits, targets, delta, variant, threads)
        npos = int((t8 == 1).sum()) if t8.numel() else 0
        header = [0, npos, _delta_bits(delta), dist.get_rank(), s.numel()]
    except Exception as e:  # raised after the error check, so that no one is left waiting
        local_exc = e
        header = [1, 0, 0, dist.get_rank(), 0]
    parts = {"header": 8 * _HEADER}
    table = torch.stack(_all_gather(torch.tensor(header, dtype=torch.int64, device=dev),
                                    group)).cpu().tolist()
    failed = [row[3] for row in table if row[0]]
    if failed:
        _fail_everywhere(local_exc, failed, group)
    deltas = sorted({row[2] for row in table})
    if len(deltas) > 1:
        raise ValueError("delta differs across the process group (%s): every process must "
                         "pass the same delta" % ", ".join(
                             "rank %d: %s" % (row[3], _apt._fmt(_delta_of(row[2])))
                             for row in table))
    counts = [row[1] for row in table]
    sizes = [row[4] for row in table]
    np_total = sum(counts)
    n = s.numel()
    _last.clear()
    _last.update(method=method, processes=world, positives=np_total, elements=sum(sizes),
                 parts=parts)
    if method == "gather":
        grad, loss = _gather_all(s, t8, sizes, me, delta, threads, group, dev, parts)
    elif np_total == 0:  # the SPEC's answer, as `sorted` gives it: loss 0, every gradient 0
        grad, loss = torch.zeros(n, dtype=torch.float32), 0.0
    else:
        grad, loss = _histogram_path(s, t8, counts, sizes, [row[3] for row in table], me,
                                     delta, threads, group, dev, parts)
    _last["bytes_sent"] = sum(parts.values())
    return grad.to(dev).reshape(logits.shape).to(logits.dtype), loss


def _gather_positives(s, t8, counts, group, dev, parts):
    """Every process's positive logits, concatenated and sorted ascending (host, float32)."""
    width = max(counts)
    mine = torch.zeros(width, dtype=torch.float32)
    if s.numel():
        p = s[t8 == 1]
        mine[:p.numel()] = p
    parts["positives"] = 4 * width
    got = _all_gather(mine.to(dev), group)
    allpos = torch.cat([g[:c].cpu() for g, c in zip(got, counts)])
    return torch.sort(allpos).values.contiguous()


def _histogram_path(s, t8, counts, sizes, granks, me, delta, threads, group, dev, parts):
    """The O(|P|) driver (steps 2-4 of the module docstring). granks: the global rank of each
    process of the group, in group order."""
    world = len(counts)
    pos = _gather_positives(s, t8, counts, group, dev, parts)
    np_total = pos.numel()
    # The same decision from the same data on every process: no collective can diverge here.
    if not _lib.lib.apl_segments_in_range(float(pos[0]), float(pos[-1]), np_total, delta):
        return _gather_all(s, t8, sizes, me, delta, threads, group, dev, parts)
    n = s.numel()
    words = _lib.APL_HIST_WORDS * 2 * np_total
    hist = torch.zeros(words + world, dtype=torch.int64)
    grad = torch.empty(n, dtype=torch.float32)  # also the memo of each negative's segment
    plan = ctypes.c_void_p()
    err = _lib.Error()
    local_exc = None
    try:
        st = _lib.lib.apl_sorted_plan_create(pos.data_ptr(), np_total, delta,
                                             ctypes.byref(plan), ctypes.byref(err))
        if st == _lib.APL_OK and _lib.lib.apl_sorted_hist_len(plan) != words:
            raise RuntimeError("aploss: the plan's histogram has %d words, expected %d"
                               % (_lib.lib.apl_sorted_hist_len(plan), words))
        if st == _lib.APL_OK and n:
            st = _lib.lib.apl_sorted_histogram(plan, s.data_ptr(), t8.data_ptr(), n,
                                               hist.data_ptr(), grad.data_ptr(), threads, None,
                                               ctypes.byref(err))
        if st != _lib.APL_OK:
            raise _apt._library_error(st, _lib.message(err), s, t8)
    except Exception as e:
        local_exc = e
        hist[words + me] = 1
    try:
        parts["histogram"] = 8 * hist.numel()
        h = hist.to(dev)
        dist.all_reduce(h, op=dist.ReduceOp.SUM, group=group)
        hist = h.cpu()
        flags = hist[words:].tolist()
        if any(flags):
            _fail_everywhere(local_exc, [granks[i] for i, f in enumerate(flags) if f], group)
        loss = ctypes.c_double()
        st = _lib.lib.apl_sorted_finish_ap(plan, hist.data_ptr(), ctypes.byref(loss),
                                           ctypes.byref(err))
        if st == _lib.APL_OK and n:
            st = _lib.lib.apl_sorted_apply(plan, s.data_ptr(), t8.data_ptr(), n,
                                           grad.data_ptr(), grad.data_ptr(), threads,
                                           ctypes.byref(err))
        if st != _lib.APL_OK:
            raise _apt._library_error(st, _lib.message(err), s, t8)
        return grad, loss.value
    finally:
        _lib.lib.apl_sorted_plan_free(plan)


def _gather_all(s, t8, sizes, me, delta, threads, group, dev, parts):
    """Every logit and target all-gathered, `sorted` (apl_run) on the whole batch, this
    process's slice of the gradient: O(N) traffic."""
    width = max(sizes)
    ls = torch.zeros(width, dtype=torch.float32)
    lt = torch.zeros(width, dtype=torch.int8)
    ls[:s.numel()] = s
    lt[:t8.numel()] = t8
    parts["logits"], parts["targets"] = 4 * width, width
    gs = _all_gather(ls.to(dev), group)
    gt = _all_gather(lt.to(dev), group)
    S = torch.cat([g[:k].cpu() for g, k in zip(gs, sizes)])
    T = torch.cat([g[:k].cpu() for g, k in zip(gt, sizes)])
    row = _apt._choose("sorted", "ap", torch.device("cpu"))
    g, _, res = _apt._run(row, "ap", S, T, delta, threads, S, T)
    lo = sum(sizes[:me])
    return g[lo:lo + s.numel()].clone(), res.loss
