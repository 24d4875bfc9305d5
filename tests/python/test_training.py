"""Training: a detector-like linear head trained 100 SGD steps on ap_loss (CPU) learns, and the
published-loop transcription gives the same loss curve to the contract's loss tolerance."""
import pytest

torch = pytest.importorskip("torch", reason="torch is not importable (apt-get install python3-torch)")
pytest.importorskip("numpy", reason="numpy is not importable (apt-get install python3-numpy)")

import aploss.torch as apl  # noqa: E402
from aploss.published import published_loss  # noqa: E402
from _util import average_precision  # noqa: E402

IMAGES, ANCHORS, CLASSES, FEATURES, STEPS = 2, 2000, 20, 16, 100


def problem():
    """Fixed random features; targets from a hidden linear teacher plus noise (top 1% positive),
    1% ignored: learnable by a linear head, not trivially."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(IMAGES, ANCHORS, FEATURES, generator=g)
    teacher = torch.randn(FEATURES, CLASSES, generator=g)
    z = x @ teacher + 0.5 * torch.randn(IMAGES, ANCHORS, CLASSES, generator=g)
    t = (z > torch.quantile(z.reshape(-1), 0.99)).to(torch.int8)
    t[torch.rand(IMAGES, ANCHORS, CLASSES, generator=g) < 0.01] = -1
    return x, t


def train(loss_fn):
    x, t = problem()
    torch.manual_seed(1)
    head = torch.nn.Linear(FEATURES, CLASSES)
    opt = torch.optim.SGD(head.parameters(), lr=1.0)
    ap_start = average_precision(head(x), t)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(head(x), t)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return ap_start, average_precision(head(x), t), losses


def test_training_learns_and_matches_published():
    ap0, ap1, losses = train(apl.ap_loss)
    assert int((problem()[1] == 1).sum()) > 100
    assert ap0 < 0.1 and ap1 > 0.8, (ap0, ap1)  # AP on the training data rises well above start
    assert losses[-1] < losses[0] - 0.5, (losses[0], losses[-1])
    assert sum(losses[-10:]) < sum(losses[:10])
    pap0, pap1, plosses = train(published_loss)
    assert pap0 == ap0
    worst = max(abs(a - b) for a, b in zip(losses, plosses))
    assert worst <= 1e-6, "loss curves differ by %.3g (bound 1e-6)" % worst
    assert abs(pap1 - ap1) <= 1e-3


def test_training_image_scope_learns():
    ap0, ap1, losses = train(lambda s, t: apl.ap_loss(s, t, scope="image"))
    assert ap1 > 0.8 and losses[-1] < losses[0] - 0.5, (ap0, ap1, losses[0], losses[-1])
