"""Agreement: aploss.torch against the C reference (apl_reference, double precision), the
fixtures of the published code run in float64 (tests/cases/ap), and the project's transcription
of the published loop (aploss.published), within the contract's tolerance (docs/SPEC.md)."""
import pytest

torch = pytest.importorskip("torch", reason="torch is not importable (apt-get install python3-torch)")
pytest.importorskip("numpy", reason="numpy is not importable (apt-get install python3-numpy)")

import aploss.torch as apl  # noqa: E402
from aploss.published import ap_loss_published  # noqa: E402
from aploss.synthetic import retinanet_like  # noqa: E402
from _util import assert_contract, case_names, load_case  # noqa: E402

CPU_ROWS = [v for v in apl.variants("ap", "cpu") if v != "auto"]


@pytest.mark.parametrize("name", case_names())
def test_fixture_every_cpu_variant(name):
    s, t, g64, l64, delta = load_case(name)
    gref, lref = apl.reference(s, t, delta)
    assert_contract(gref, lref, g64, l64, "reference on %s" % name)
    for v in ["auto"] + CPU_ROWS:
        grad, loss = apl.ap_loss_with_grad(s, t, delta, variant=v)
        assert grad.shape == s.shape and grad.dtype == torch.float32
        assert loss.shape == (1,)
        assert_contract(grad, loss, g64, l64, "%s on %s" % (v, name))
        # The autograd path gives the same gradient and loss.
        x = s.clone().requires_grad_()
        lo = apl.ap_loss(x, t, delta, variant=v)
        lo.backward()
        assert torch.equal(x.grad, grad) and lo.item() == loss.item()


@pytest.mark.parametrize("name", case_names())
def test_fixture_published_transcription(name):
    s, t, g64, l64, delta = load_case(name)
    grad, loss = ap_loss_published(s, t, delta)  # float32, as published
    assert loss.shape == (1,) and grad.shape == s.shape
    assert_contract(grad, loss, g64, l64, "published (float32) on %s" % name)
    grad, loss = ap_loss_published(s.double(), t, delta)
    assert_contract(grad, loss, g64, l64, "published (float64) on %s" % name)


# Generated inputs: shape, distribution, delta, positive rate per anchor, seed.
GENERATED = [
    ((1, 100, 4), "mid", 1.0, 0.05, 1),
    ((2, 500, 20), "early", 1.0, 0.01, 2),
    ((2, 500, 20), "late", 0.25, 0.01, 3),
    ((1, 32736, 80), "mid", 1.0, 1e-3, 4),
    ((1, 32736, 80), "early", 0.1, 1e-3, 5),
    ((1, 32736, 80), "late", 4.0, 1e-3, 6),
    ((4, 32736, 80), "mid", 0.5, 1e-3, 7),
    ((1, 2000, 20), "mid", 1.0, 0.0, 8),  # no positives: loss 0, gradient 0
]


@pytest.mark.parametrize("shape,dist,delta,rate,seed", GENERATED)
def test_generated(shape, dist, delta, rate, seed):
    s, t = retinanet_like(*shape, dist=dist, pos_rate=rate, seed=seed)
    g64, l64 = apl.reference(s, t, delta)
    grad, loss = apl.ap_loss_with_grad(s, t, delta)
    assert_contract(grad, loss, g64, l64, "auto vs reference")
    gp, lp = ap_loss_published(s, t, delta)
    assert_contract(gp, lp, g64, l64, "published vs reference")
    for threads in (1, 2):
        g1, l1 = apl.ap_loss_with_grad(s, t, delta, threads=threads)
        assert_contract(g1, l1, g64, l64, "auto, %d thread(s)" % threads)


def test_retinanet_batch8_mid():
    """RetinaNet batch 8 (8 x 32736 x 80 = 2.1e7 elements), mid scores, delta 1: once."""
    s, t = retinanet_like(8, dist="mid", seed=12345)
    assert s.numel() == 20951040 and int((t == 1).sum()) > 100
    g64, l64 = apl.reference(s, t, 1.0)
    grad, loss = apl.ap_loss_with_grad(s, t, 1.0)
    assert_contract(grad, loss, g64, l64, "auto vs reference, batch 8")
    gp, lp = ap_loss_published(s, t, 1.0)
    assert_contract(gp, lp, g64, l64, "published vs reference, batch 8")
    # ours and the transcription against each other, in the contract's terms
    assert_contract(grad, loss, gp.double(), lp.item(), "auto vs published, batch 8")
