"""aploss.published: the project's PyTorch transcription of the published AP-Loss loop.

The AP-Loss authors' public code computes the loss in `AP_loss(logits, targets)`: a Python loop
over the positives in ascending order of logit, each step vectorised over every positive and
every valid negative (negatives below min positive - delta are pruned first, which is exact),
carrying the interpolated precision `max_prec` and rescaling the negatives' gradient by
(1 - max_prec) / (1 - cur) when it does not rise. It returns (grad, loss) with grad shaped like
logits and loss of shape [1]; the authors' autograd Function hands grad_output * grad to
autograd. This is that code with delta as an argument and the device and dtype taken from the
logits (the original allocates float32 on CUDA), so it runs on CPU too, and in float64 for
checking. It is the baseline aploss.torch is checked and timed against (tests/python,
bench/torch_step.py); its contract is docs/SPEC.md. Cost: O(|P| * |V|) per call.

    ap_loss_published(logits, targets, delta=1.0) -> (grad, loss)
    published_loss(logits, targets, delta=1.0)     -> 0-dim loss with autograd (the Function)

Inputs are not checked (as in the original): targets hold -1, 0, 1; logits are finite.
"""
import torch

__all__ = ["ap_loss_published", "published_loss"]


def ap_loss_published(logits, targets, delta=1.0):
    """(grad, loss) of AP-Loss as the published AP_loss computes them, in logits' dtype."""
    logits = logits.detach()
    grad = torch.zeros(logits.shape, dtype=logits.dtype, device=logits.device)
    metric = torch.zeros(1, dtype=logits.dtype, device=logits.device)
    if targets.numel() == 0 or torch.max(targets) <= 0:
        return grad, metric  # no positives: loss 0, gradient 0 (the published behaviour)
    labels_p = targets == 1
    fg_logits = logits[labels_p]
    threshold_logit = torch.min(fg_logits) - delta
    # Ignore the negatives j with L_ij = 0 for every positive i: exact, and the published speed-up.
    valid_labels_n = (targets == 0) & (logits >= threshold_logit)
    valid_bg_logits = logits[valid_labels_n]
    valid_bg_grad = torch.zeros(len(valid_bg_logits), dtype=logits.dtype, device=logits.device)
    fg_num = len(fg_logits)
    prec = torch.zeros(fg_num, dtype=logits.dtype, device=logits.device)
    order = torch.argsort(fg_logits)
    max_prec = 0
    for ii in order:
        tmp1 = fg_logits - fg_logits[ii]
        tmp1 = torch.clamp(tmp1 / (2 * delta) + 0.5, min=0, max=1)
        tmp2 = valid_bg_logits - fg_logits[ii]
        tmp2 = torch.clamp(tmp2 / (2 * delta) + 0.5, min=0, max=1)
        a = torch.sum(tmp1) + 0.5  # H(0) = 0.5 for i itself: 1 + the sum over k != i
        b = torch.sum(tmp2)
        tmp2 /= a + b
        current_prec = a / (a + b)
        if max_prec <= current_prec:
            max_prec = current_prec
        else:
            tmp2 *= (1 - max_prec) / (1 - current_prec)
        valid_bg_grad += tmp2
        prec[ii] = max_prec
    grad[valid_labels_n] = valid_bg_grad
    grad[labels_p] = -(1 - prec)
    fg_num = max(fg_num, 1)
    grad /= fg_num
    metric = torch.sum(prec, dim=0, keepdim=True) / fg_num
    return grad, 1 - metric


class _PublishedAPLoss(torch.autograd.Function):
    """The published Function: forward computes loss and gradient, backward scales the gradient."""

    @staticmethod
    def forward(ctx, logits, targets, delta=1.0):
        grad, loss = ap_loss_published(logits, targets, delta)
        ctx.save_for_backward(grad)
        return loss.reshape(())

    @staticmethod
    def backward(ctx, grad_output):
        grad, = ctx.saved_tensors
        return grad_output * grad, None, None


def published_loss(logits, targets, delta=1.0):
    """ap_loss_published as a 0-dim loss with autograd, for training and timing steps."""
    return _PublishedAPLoss.apply(logits, targets, delta)
