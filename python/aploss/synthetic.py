"""aploss.synthetic: detector-like logits and targets made with torch, for tests and benchmarks.

`retinanet_like(batch, ...)` follows the shapes of the C generator (src/generate.c, `aploss gen`)
with torch's generator instead of its hash: per anchor, a positive with probability pos_rate
(its one positive class drawn uniformly) or ignored with probability ignore_rate; scores are
normal with the distribution's means and deviations (mid: negatives N(-7, 1) with 1% hard ones
N(-2.5, 1.5), positives N(-0.5, 1.5)). Same seed, same tensors.
"""
import torch

RETINANET_ANCHORS = 32736
COCO_CLASSES = 80

# neg_mean, neg_sd, hard_frac, hard_mean, hard_sd, pos_mean, pos_sd (src/generate.c, shapes[])
DISTS = {
    "early": (-4.6, 0.25, 0.0, 0.0, 1.0, -4.5, 0.3),
    "mid": (-7.0, 1.0, 0.01, -2.5, 1.5, -0.5, 1.5),
    "late": (-10.0, 1.0, 0.001, -1.0, 1.5, 2.5, 1.5),
}


def retinanet_like(batch=1, anchors=RETINANET_ANCHORS, classes=COCO_CLASSES, *, dist="mid",
                   pos_rate=1e-3, ignore_rate=0.01, seed=12345):
    """(logits float32 [batch, anchors, classes], targets int8 of the same shape), on the CPU."""
    nm, ns, hf, hm, hs, pm, ps = DISTS[dist]
    g = torch.Generator().manual_seed(seed)
    shape = (batch, anchors, classes)
    u = torch.rand((batch, anchors, 1), generator=g, dtype=torch.float64)
    kind = torch.where(u < ignore_rate, -1, torch.where(u < ignore_rate + pos_rate, 1, 0))
    pos_class = torch.randint(classes, (batch, anchors, 1), generator=g)
    is_pos = (kind == 1) & (torch.arange(classes).reshape(1, 1, classes) == pos_class)
    targets = torch.where(is_pos, 1, torch.where(kind == -1, -1, 0)).to(torch.int8)
    z = torch.randn(shape, generator=g, dtype=torch.float64)
    hard = torch.rand(shape, generator=g, dtype=torch.float64) < hf
    s = torch.where(hard, hm + hs * z, nm + ns * z)
    s = torch.where(is_pos, pm + ps * z, s)
    return s.to(torch.float32), targets
