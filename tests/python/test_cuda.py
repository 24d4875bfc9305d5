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
