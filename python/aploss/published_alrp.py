"""aploss.published_alrp: a PyTorch transcription of the official aLRP Loss forward.

The official code (kemaloksuz/aLRPLoss at 2cfaa8ec, `aLRPLoss.forward` in
mmdet/models/losses/alrp_loss.py and its caller `aLRPLossRetinaHead.loss`; docs/SPEC_ALRP.md)
loops over the positives in ascending order of logit; for each positive i it ramps the other
positives and the valid negatives (those at or above min positive logit - delta) against it,
gets its rank r_i = 1 + sum_{k != i} H + b_i, its precision, and, when b_i > eps,
L_i = (b_i + sum_{k != i} e_k H(s_k - s_i)) / r_i, which it hands to the negatives with weights
H(s_j - s_i) / b_i. The head then computes the localisation loss from the ranks along the
positives sorted by descending logit. This is that loop, in the logits' dtype (float64 for the
fixtures) and device; it is the benchmark baseline for the C variants of loss alrp.

    alrp_loss_published(logits, targets, eloc, delta=1.0, eps=1e-5)
        -> (grad, grad_e, loss_cls, loss_loc)

logits: any shape (flattened); targets: -1 ignore, 0 negative, 1 positive; eloc: one
localisation error per positive, in the flat order of the positives. grad: d loss_cls / d
logits as the official backward returns it (same shape as logits, flattened); grad_e:
d loss_loc / d eloc with the ranks and the order held constant (what training passes to the
regression losses); loss_cls, loss_loc: 0-dim tensors. Ties among positives in the
localisation order: the official argsort is unspecified; a stable ascending sort, then reversed
(descending flat index first among equal logits: the fixtures' rule) is used. No positives:
zeros (the official function fails there; its head returns zero losses).
"""
import torch

__all__ = ["alrp_loss_published"]


def alrp_loss_published(logits, targets, eloc, delta=1.0, eps=1e-5):
    s = logits.reshape(-1)
    t = targets.reshape(-1)
    grad = torch.zeros_like(s)
    fg_labels = t == 1
    fg_logits = s[fg_labels]
    fg_num = fg_logits.numel()
    e = eloc.reshape(-1).to(s.dtype)
    if fg_num == 0:
        z = s.new_zeros(())
        return grad, e.new_zeros(0), z, z
    threshold_logit = torch.min(fg_logits) - delta
    relevant_bg_labels = (t == 0) & (s >= threshold_logit)
    relevant_bg_logits = s[relevant_bg_labels]
    relevant_bg_grad = torch.zeros_like(relevant_bg_logits)
    rank = torch.zeros_like(fg_logits)
    prec = torch.zeros_like(fg_logits)
    fg_grad = torch.zeros_like(fg_logits)
    order = torch.argsort(fg_logits)
    for ii in order.tolist():  # the official loop, one positive at a time
        fg_relations = torch.clamp((fg_logits - fg_logits[ii]) / (2 * delta) + 0.5, min=0, max=1)
        fg_relations[ii] = 0  # i != k in the positives' sum
        bg_relations = torch.clamp((relevant_bg_logits - fg_logits[ii]) / (2 * delta) + 0.5,
                                   min=0, max=1)
        rank_pos = 1 + torch.sum(fg_relations)
        FP_num = torch.sum(bg_relations)
        rank[ii] = rank_pos + FP_num
        prec[ii] = rank_pos / rank[ii]
        if FP_num > eps:
            fg_grad[ii] = -(torch.sum(fg_relations * e) + FP_num) / rank[ii]
            relevant_bg_grad += bg_relations * (-fg_grad[ii] / FP_num)
    grad[fg_labels] = fg_grad
    grad[relevant_bg_labels] = relevant_bg_grad
    grad /= fg_num
    loss_cls = 1 - prec.mean()
    # The head's localisation loss: positives by descending logit (stable ascending, flipped),
    # cumulative errors over the ranks, mean over the positives; its gradient in e with rank
    # and order constant: grad_e[pi(p)] = (1/|P|) sum_{q >= p} 1 / r_pi(q).
    loc_order = torch.sort(fg_logits, stable=True).indices.flip(0)
    r_ord = rank[loc_order]
    loss_loc = (torch.cumsum(e[loc_order], 0) / r_ord).mean()
    inv = 1.0 / r_ord
    grad_e = torch.zeros_like(e)
    grad_e[loc_order] = torch.flip(torch.cumsum(torch.flip(inv, [0]), 0), [0]) / fg_num
    return grad, grad_e, loss_cls, loss_loc
