"""scope="image": each image ranked on its own, the loss the mean of per-image losses."""
import pytest

torch = pytest.importorskip("torch", reason="torch is not importable (apt-get install python3-torch)")
pytest.importorskip("numpy", reason="numpy is not importable (apt-get install python3-numpy)")

import aploss.torch as apl  # noqa: E402
from aploss.synthetic import retinanet_like  # noqa: E402
from _util import assert_contract  # noqa: E402


@pytest.mark.parametrize("images", [1, 3])
def test_image_scope_is_mean_of_single_images(images):
    s, t = retinanet_like(images, 800, 20, pos_rate=0.01, seed=21)
    grad, loss = apl.ap_loss_with_grad(s, t, scope="image")
    singles = [apl.ap_loss_with_grad(s[b], t[b]) for b in range(images)]
    mean = sum(l.item() for _, l in singles) / images
    assert abs(loss.item() - mean) <= 1e-6
    for b, (g, _) in enumerate(singles):
        assert torch.equal(grad[b], g / images)
    # the autograd path: backward of the image-scope loss is the same gradient
    x = s.clone().requires_grad_()
    out = apl.ap_loss(x, t, scope="image")
    out.backward()
    assert torch.equal(x.grad, grad) and abs(out.item() - mean) <= 1e-6


def test_image_scope_differs_from_batch():
    s, t = retinanet_like(2, 800, 20, pos_rate=0.01, seed=22)
    s[1] += 3.0  # image 1 scores higher throughout: batch ranking mixes the images, image does not
    _, lb = apl.ap_loss_with_grad(s, t, scope="batch")
    _, li = apl.ap_loss_with_grad(s, t, scope="image")
    assert abs(lb.item() - li.item()) > 1e-3


def test_image_scope_against_reference():
    s, t = retinanet_like(2, 1000, 20, pos_rate=0.01, seed=23)
    grad, loss = apl.ap_loss_with_grad(s, t, 0.5, scope="image")
    refs = [apl.reference(s[b], t[b], 0.5) for b in range(2)]
    g64 = torch.stack([g / 2 for g, _ in refs])
    assert_contract(grad, loss, g64, sum(l for _, l in refs) / 2, "image scope vs reference")


def test_image_without_positives_counts_zero():
    s, t = retinanet_like(2, 500, 20, pos_rate=0.02, seed=24)
    t[1][t[1] == 1] = 0
    grad, loss = apl.ap_loss_with_grad(s, t, scope="image")
    _, l0 = apl.ap_loss_with_grad(s[0], t[0])
    assert abs(loss.item() - l0.item() / 2) <= 1e-6
    assert torch.count_nonzero(grad[1]) == 0
