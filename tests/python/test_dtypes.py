"""dtypes, layouts and the no-modification rule."""
import pytest

torch = pytest.importorskip("torch", reason="torch is not importable (apt-get install python3-torch)")
pytest.importorskip("numpy", reason="numpy is not importable (apt-get install python3-numpy)")

import aploss.torch as apl  # noqa: E402
from aploss.synthetic import retinanet_like  # noqa: E402


@pytest.fixture
def inputs():
    return retinanet_like(2, 300, 10, pos_rate=0.05, seed=31)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_logits(inputs, dtype):
    """Computed in float32 on the converted logits; gradient in the input dtype."""
    s, t = inputs
    x = s.to(dtype)
    grad, loss = apl.ap_loss_with_grad(x, t)
    g32, l32 = apl.ap_loss_with_grad(x.float(), t)
    assert grad.dtype == dtype and grad.shape == x.shape
    assert torch.equal(grad, g32.to(dtype))
    # the loss is the library's double, rounded to float32 (float64 logits: kept in float64)
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert abs(loss.item() - l32.item()) <= (6e-8 if dtype == torch.float64 else 0)
    xg = x.clone().requires_grad_()
    out = apl.ap_loss(xg, t)
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    out.backward()
    assert xg.grad.dtype == dtype and torch.equal(xg.grad, g32.to(dtype))


@pytest.mark.parametrize("layout", ["transpose", "stride", "expand", "permute"])
def test_non_contiguous(inputs, layout):
    s, t = inputs
    if layout == "transpose":
        x, y = s.transpose(1, 2), t.transpose(1, 2)
    elif layout == "stride":
        x, y = s[:, ::2, 1:], t[:, ::2, 1:]
    elif layout == "expand":
        x, y = s[:1, :1].expand(3, 300, 10), t[:1, :1].expand(3, 300, 10)
    else:
        x, y = s.permute(2, 0, 1), t.permute(2, 0, 1)
    assert not x.is_contiguous()
    grad, loss = apl.ap_loss_with_grad(x, y)
    gc, lc = apl.ap_loss_with_grad(x.contiguous(), y.contiguous())
    assert torch.equal(grad, gc) and loss.item() == lc.item()
    xg = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    apl.ap_loss(xg, y).backward()
    assert torch.equal(xg.grad, gc)
    # image scope on a non-contiguous batch: images are slices of the logical tensor
    gi, li = apl.ap_loss_with_grad(x, y, scope="image")
    gci, lci = apl.ap_loss_with_grad(x.contiguous(), y.contiguous(), scope="image")
    assert torch.equal(gi, gci) and li.item() == lci.item()


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64,
                                   torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_target_dtypes(inputs, dtype):
    s, t = inputs
    assert (t == -1).any() and (t == 1).any()
    grad, loss = apl.ap_loss_with_grad(s, t.to(dtype))
    g8, l8 = apl.ap_loss_with_grad(s, t)
    assert torch.equal(grad, g8) and loss.item() == l8.item()


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8])
def test_unsigned_and_bool_targets(inputs, dtype):
    s, t = inputs
    t01 = (t == 1)
    grad, loss = apl.ap_loss_with_grad(s, t01.to(dtype))
    g8, l8 = apl.ap_loss_with_grad(s, t01.to(torch.int8))
    assert torch.equal(grad, g8) and loss.item() == l8.item()


def test_nothing_modified(inputs):
    s, t = inputs
    for x, y in [(s, t), (s.half(), t.long()), (s.transpose(1, 2), t.transpose(1, 2).float())]:
        xs, ys = x.clone(), y.clone()
        xg = x.clone().requires_grad_()
        apl.ap_loss_with_grad(x, y)
        apl.ap_loss_with_grad(x, y, scope="image")
        apl.ap_loss(xg, y).backward()
        assert torch.equal(x, xs) and torch.equal(y, ys) and torch.equal(xg.detach(), xs)


def test_contiguous_float32_is_not_copied(inputs, monkeypatch):
    """A contiguous float32 / int8 pair reaches the library as the caller's own memory."""
    s, t = inputs
    seen = []
    real = apl._run

    def spy(row, loss, s_, t_, *a, **k):
        seen.append((s_.data_ptr(), t_.data_ptr()))
        return real(row, loss, s_, t_, *a, **k)
    monkeypatch.setattr(apl, "_run", spy)
    apl.ap_loss_with_grad(s, t)
    assert seen == [(s.data_ptr(), t.data_ptr())]


def test_empty_and_tiny():
    g, l = apl.ap_loss_with_grad(torch.zeros(0), torch.zeros(0, dtype=torch.int8))
    assert g.shape == (0,) and l.item() == 0.0
    g, l = apl.ap_loss_with_grad(torch.tensor(0.3), torch.tensor(1))  # 0-dim: one positive
    assert g.shape == () and l.item() == 0.0 and g.item() == 0.0
