"""CUDA tensors: a GPU row's device entry point on torch's current stream. Skipped, with the
reason, where torch has no CUDA device or the library was built without the GPU rows."""
import pytest

torch = pytest.importorskip("torch", reason="torch is not importable (apt-get install python3-torch)")
pytest.importorskip("numpy", reason="numpy is not importable (apt-get install python3-numpy)")

import aploss.torch as apl  # noqa: E402
from aploss.synthetic import retinanet_like  # noqa: E402
from _util import assert_contract  # noqa: E402


def _why_skip():
    if not torch.cuda.is_available():
        return "no CUDA device visible to torch %s" % torch.__version__
    if not apl.variants("ap", "cuda"):
        return "libaploss has no runnable GPU row (built without CUDA?): " + "; ".join(
            v.why_not for v in apl._table() if v.device == "cuda")
    return None


pytestmark = pytest.mark.skipif(_why_skip() is not None, reason=str(_why_skip()))
GPU_ROWS = [v for v in (apl.variants("ap", "cuda") or ["auto"]) if v != "auto"]


@pytest.mark.parametrize("variant", ["auto"] + GPU_ROWS)
def test_cuda_agrees_with_reference(variant):
    s, t = retinanet_like(1, 32736, 80, seed=41)
    g64, l64 = apl.reference(s, t)
    sc, tc = s.cuda(), t.cuda()
    grad, loss = apl.ap_loss_with_grad(sc, tc, variant=variant)
    assert grad.is_cuda and loss.is_cuda
    assert_contract(grad, loss, g64, l64, variant)
    x = sc.clone().requires_grad_()
    apl.ap_loss(x, tc, variant=variant).backward()
    assert torch.equal(x.grad, grad)


def test_cuda_on_a_side_stream_and_half():
    s, t = retinanet_like(2, 2000, 20, pos_rate=0.01, seed=42)
    g64, l64 = apl.reference(s, t)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        sc, tc = s.cuda(non_blocking=True), t.long().cuda(non_blocking=True)
        grad, loss = apl.ap_loss_with_grad(sc, tc)
        g16, _ = apl.ap_loss_with_grad(sc.half(), tc)
    torch.cuda.synchronize()
    assert_contract(grad, loss, g64, l64, "side stream")
    gi, li = apl.ap_loss_with_grad(sc, tc, scope="image")
    assert g16.dtype == torch.float16 and gi.shape == sc.shape


def test_cuda_bad_input_and_device_mix():
    s, t = retinanet_like(2, 100, 4, pos_rate=0.05, seed=43)
    s[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"^logits\[411\] \(index \(1, 2, 3\)\) = nan"):
        apl.ap_loss(s.cuda(), t.cuda())
    s[1, 2, 3] = 0
    t[0, 1, 1] = 3
    with pytest.raises(ValueError, match=r"^targets\[5\] \(index \(0, 1, 1\)\) = 3"):
        apl.ap_loss(s.cuda(), t.cuda(), scope="image")
    with pytest.raises(ValueError, match="same device"):
        apl.ap_loss(s.cuda(), t)
    with pytest.raises(ValueError, match="runs on cpu tensors"):
        apl.ap_loss(s.cuda(), t.cuda(), variant="sorted")


ALRP_GPU_ROWS = [v for v in (apl.variants("alrp", "cuda") or []) if v != "auto"]


@pytest.mark.parametrize("variant", ["auto"] + ALRP_GPU_ROWS)
def test_cuda_alrp_fixtures_and_autograd(variant):
    """aLRP on CUDA tensors (e on the logits' device): the official code's fixtures within the
    contract (docs/SPEC_ALRP.md), both gradients back on the GPU, autograd to logits and e."""
    from _util import case_array, case_meta, case_names, contract_errors
    for name in case_names("alrp"):
        f = lambda x: case_array("alrp", name, x)  # noqa: E731
        s, t, e = f("logits").float(), f("targets").to(torch.int8), f("eloc").float()
        meta = case_meta("alrp", name)
        sc, tc, ec = s.cuda(), t.cuda(), e.cuda()
        g, ge, lc, ll = apl.alrp_loss_with_grad(sc, tc, ec, meta["delta"], variant=variant)
        assert g.is_cuda and ge.is_cuda and lc.is_cuda and ll.is_cuda
        rel, dl = contract_errors(g, lc, f("grad_f64").double().reshape(s.shape),
                                  meta["loss_cls_f64"])
        rel_e, dll = contract_errors(ge, ll, f("grad_eloc_f64").double(), meta["loss_loc_f64"])
        assert max(rel, dl, rel_e, dll) <= 1e-6, (variant, name, rel, dl, rel_e, dll)
        x, y = sc.clone().requires_grad_(), ec.clone().requires_grad_()
        c, l = apl.alrp_loss(x, tc, y, meta["delta"], variant=variant)
        (2 * c + 3 * l).backward()
        assert torch.equal(x.grad, 2 * g) and torch.equal(y.grad, 3 * ge)
