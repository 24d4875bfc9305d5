"""Autograd: backward puts grad_output * gradient into logits.grad, as the published Function."""
import pytest

torch = pytest.importorskip("torch", reason="torch is not importable (apt-get install python3-torch)")
pytest.importorskip("numpy", reason="numpy is not importable (apt-get install python3-numpy)")

import aploss.torch as apl  # noqa: E402
from aploss.published import published_loss  # noqa: E402
from aploss.synthetic import retinanet_like  # noqa: E402


@pytest.fixture
def inputs():
    return retinanet_like(2, 500, 20, pos_rate=0.02, seed=11)


def test_backward_is_the_gradient(inputs):
    s, t = inputs
    grad, loss = apl.ap_loss_with_grad(s, t)
    assert grad.abs().max() > 0
    x = s.clone().requires_grad_()
    out = apl.ap_loss(x, t)
    assert out.shape == () and out.dtype == torch.float32 and out.requires_grad
    assert out.item() == loss.item()
    out.backward()
    assert torch.equal(x.grad, grad)


@pytest.mark.parametrize("scale", [3.0, -0.5, 0.0])
def test_grad_output_scales(inputs, scale):
    s, t = inputs
    grad, _ = apl.ap_loss_with_grad(s, t)
    x = s.clone().requires_grad_()
    (apl.ap_loss(x, t) * scale).backward()
    assert torch.equal(x.grad, torch.tensor(scale) * grad)
    y = s.clone().requires_grad_()
    apl.ap_loss(y, t).backward(torch.tensor(scale))
    assert torch.equal(y.grad, x.grad)


def test_same_as_published_function(inputs):
    s, t = inputs
    x, y = s.clone().requires_grad_(), s.clone().requires_grad_()
    (apl.ap_loss(x, t) * 3).backward()
    (published_loss(y, t) * 3).backward()
    rel = (x.grad - y.grad).abs().max() / y.grad.abs().max()
    assert rel <= 1e-6


def test_no_grad(inputs):
    s, t = inputs
    x = s.clone().requires_grad_()
    with torch.no_grad():
        out = apl.ap_loss(x, t)
    assert not out.requires_grad and out.grad_fn is None
    assert out.item() == apl.ap_loss_with_grad(s, t)[1].item()


def test_retain_graph(inputs):
    s, t = inputs
    grad, _ = apl.ap_loss_with_grad(s, t)
    x = s.clone().requires_grad_()
    out = apl.ap_loss(x, t)
    out.backward(retain_graph=True)
    out.backward()
    assert torch.equal(x.grad, grad + grad)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.backward()  # the saved gradient was freed, as for any Function


def test_twice_in_one_step(inputs):
    s, t = inputs
    g1, _ = apl.ap_loss_with_grad(s, t, 1.0)
    g2, _ = apl.ap_loss_with_grad(s, t, 0.5)
    x = s.clone().requires_grad_()
    total = apl.ap_loss(x, t, 1.0) + 2 * apl.ap_loss(x, t, 0.5)
    total.backward()
    assert torch.allclose(x.grad, g1 + 2 * g2, rtol=0, atol=1e-7 * g1.abs().max().item())
    assert x.grad.abs().max() > 0


def test_through_a_layer(inputs):
    """The loss on a layer's output: the chain rule reaches the weights (autograd.grad too)."""
    s, t = inputs
    torch.manual_seed(0)
    head = torch.nn.Linear(20, 20)
    feats = torch.randn(2, 500, 20)
    out = head(feats)
    (gw,) = torch.autograd.grad(apl.ap_loss(out, t), [head.weight])
    grad, _ = apl.ap_loss_with_grad(out.detach(), t)
    expect = torch.einsum("bac,bad->cd", grad, feats)
    assert torch.allclose(gw, expect, rtol=1e-5, atol=1e-7)
