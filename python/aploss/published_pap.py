"""aploss.published_pap: a PyTorch transcription of the official Parameterized AP Loss.

The official code (fundamentalvision/Parameterized-AP-Loss, `paploss` with `_linear` in
mmdet/models/losses/paploss.py, docs/SPEC_PAP.md) computes the loss densely over every (row,
positive) pair and trains by autograd. This is that computation: the rows S are the top-K valid
logits, an [|S|, P] matrix of h = clamp((s_j - s_i)/2 + 1/2, 0, 1), the piece index of every
entry from [|S|, P, 6] comparisons, gathers, products and sums; autograd gives the gradients to
the logits and to the IoUs. It runs in the logits' dtype (float64 for checking against the
fixtures) and device. It is the benchmark baseline for the C variants of loss pap; its memory
is O(|S| * P) (several tensors of that size), which is why the official heads cut at K = 1e5.

    pap_loss_published(logits, targets, iou, ctrl, topk) -> 0-dim loss with autograd

logits: any shape (flattened); targets: -1 ignore, 0 negative, 1 positive; iou: one value per
positive in [0, 1], in the flat order of the positives; ctrl: 4 or 5 rows of 12 (H2 I2 I3 I1
[H1], each x0 y0 .. x5 y5), held in float32 by the official heads; topk: K (0 = every valid
entry). Ties at the top-K cut: torch.topk leaves them unspecified; a stable sort is used here
instead, which ranks the lower flat index first (the fixtures' rule). Inputs are not checked
(as in the original).
"""
import torch

__all__ = ["pap_loss_published"]


def _linear(x, row):
    """Piecewise-linear interpolation through (X_k, Y_k) = (row[2k], row[2k+1]), k = 0..5, with
    the official piece rule m = #{k : x > X_k} + [x = 0] #{k : X_k = 0} - 1."""
    X, Y = row[0::2], row[1::2]
    m = (x.unsqueeze(-1) > X).sum(-1) + (x == 0).long() * (X == 0).sum() - 1
    x0, x1, y0, y1 = X[m], X[m + 1], Y[m], Y[m + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


def pap_loss_published(logits, targets, iou, ctrl, topk):
    s = logits.reshape(-1)
    t = targets.reshape(-1)
    ctrl = torch.as_tensor(ctrl).to(device=s.device, dtype=s.dtype)  # float32 values, exactly
    pos_idx = torch.nonzero(t == 1).squeeze(1)
    P = pos_idx.numel()
    if P == 0:
        return s.sum() * 0.0  # loss 0, gradient 0
    valid = torch.nonzero(t != -1).squeeze(1)
    K = int(topk)
    if 0 < K < valid.numel():
        order = torch.sort(s.detach()[valid], descending=True, stable=True).indices[:K]
        rows = valid[order]
    else:
        rows = valid
    # u: the IoU of each element when a positive, else 0 (autograd reaches iou through it).
    u = torch.zeros(s.shape, dtype=s.dtype, device=s.device).index_put((pos_idx,), iou.to(s.dtype))
    s_rows, u_rows, s_pos = s[rows], u[rows], s[pos_idx]
    d = s_rows[:, None] - s_pos[None, :]                      # [|S|, P]
    h = torch.clamp(d / 2 + 0.5, 0, 1)
    w = 1 - _linear(u_rows, ctrl[1])                          # 1 - I2
    N = (w[:, None] * _linear(h, ctrl[0])).sum(0)             # H2
    if ctrl.shape[0] == 5:
        D = _linear(h.detach(), ctrl[4]).sum(0)               # H1, detached
    else:
        D = (torch.sign(d.detach()) / 2 + 0.5).sum(0)         # the step
    v = iou.to(s.dtype)
    return (1 - _linear(v, ctrl[3]) + _linear(v, ctrl[2]) * N / D).sum() / (P + 1e-8)
