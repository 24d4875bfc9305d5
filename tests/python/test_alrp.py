"""aLRP Loss through aploss.torch.alrp_loss: the fixtures of the official code (tests/cases/alrp)
within the contract's tolerance (docs/SPEC_ALRP.md), autograd to both inputs, image scope, and
the refusals of eloc. Skipped where no variant of the library implements aLRP."""

import pytest

torch = pytest.importorskip("torch", reason="torch is not importable (apt-get install python3-torch)")
np = pytest.importorskip("numpy", reason="numpy is not importable (apt-get install python3-numpy)")

import aploss.torch as apl  # noqa: E402
from aploss.synthetic import retinanet_like  # noqa: E402
from _util import case_array, case_meta, case_names, contract_errors  # noqa: E402

ROWS = [v for v in apl.variants("alrp", "cpu") if v != "auto"]
pytestmark = pytest.mark.skipif(not ROWS, reason="no CPU variant of libaploss implements alrp")
NAMES = case_names("alrp")


def load(name):
    f = lambda x: case_array("alrp", name, x)  # noqa: E731
    return (f("logits").float(), f("targets").to(torch.int8), f("eloc").float(),
            f("grad_f64").double(), f("grad_eloc_f64").double(), case_meta("alrp", name))


@pytest.mark.parametrize("name", NAMES)
def test_fixture(name):
    s, t, e, g64, ge64, meta = load(name)
    for v in ["auto"] + ROWS:
        g, ge, lc, ll = apl.alrp_loss_with_grad(s, t, e, meta["delta"], variant=v)
        rel, dl = contract_errors(g, lc, g64.reshape(s.shape), meta["loss_cls_f64"])
        rel_e, dll = contract_errors(ge, ll, ge64, meta["loss_loc_f64"])
        assert max(rel, dl, rel_e, dll) <= 1e-6, (v, name, rel, dl, rel_e, dll)
        x, y = s.clone().requires_grad_(), e.clone().requires_grad_()
        c, l = apl.alrp_loss(x, t, y, meta["delta"], variant=v)
        (2 * c + 3 * l).backward()
        assert torch.equal(x.grad, 2 * g) and torch.equal(y.grad, 3 * ge)
        assert c.item() == lc.item() and l.item() == ll.item()


def test_image_scope_is_mean():
    s, t = retinanet_like(2, 400, 10, pos_rate=0.05, seed=51)
    npos = [int((t[b] == 1).sum()) for b in range(2)]
    e = torch.rand(sum(npos), generator=torch.Generator().manual_seed(1))
    g, ge, lc, ll = apl.alrp_loss_with_grad(s, t, e, scope="image")
    one = [apl.alrp_loss_with_grad(s[0], t[0], e[:npos[0]]),
           apl.alrp_loss_with_grad(s[1], t[1], e[npos[0]:])]
    assert abs(lc.item() - (one[0][2].item() + one[1][2].item()) / 2) <= 1e-6
    assert abs(ll.item() - (one[0][3].item() + one[1][3].item()) / 2) <= 1e-6
    assert torch.equal(g[0], one[0][0] / 2) and torch.equal(g[1], one[1][0] / 2)
    assert torch.equal(ge, torch.cat([one[0][1], one[1][1]]) / 2)


def test_eloc_refusals():
    s, t = retinanet_like(2, 100, 4, pos_rate=0.05, seed=52)
    npos = int((t == 1).sum())
    e = torch.rand(npos)
    with pytest.raises(ValueError, match=r"^eloc has %d values: expected one per positive \(%d\)"
                       % (npos - 1, npos)):
        apl.alrp_loss(s, t, e[1:])
    bad = e.clone()
    bad[2] = -0.5
    with pytest.raises(ValueError, match=r"^eloc\[2\] = -0\.5: expected a finite value >= 0"):
        apl.alrp_loss(s, t, bad)
    bad[2] = float("nan")
    with pytest.raises(ValueError, match=r"^eloc\[2\] = nan"):
        apl.alrp_loss(s, t, bad, scope="image")
    with pytest.raises(TypeError, match=r"^eloc: expected a torch\.Tensor"):
        apl.alrp_loss(s, t, [0.1] * npos)
    with pytest.raises(ValueError, match=r"^eloc is on meta but logits are on cpu"):
        apl.alrp_loss(s, t, e.to("meta"))
    # thrust_sorted_cuda is in every build's table and implements only AP-Loss.
    with pytest.raises(ValueError, match=r"variant 'thrust_sorted_cuda': does not implement loss "
                       r"alrp; choices for loss alrp on cpu: auto, "):
        apl.alrp_loss(s, t, e, variant="thrust_sorted_cuda")
