"""Parameterized AP Loss through aploss.torch.pap_loss: the fixtures of the official code
(tests/cases/pap) and the float64 transcription of the official dense loss
(aploss.published_pap) on generated cases with every shipped parameter set, top-K cuts through
ties and logits within rounding of a breakpoint, all within the contract's tolerance
(docs/SPEC_PAP.md, "Agreement": 1e-6 of max |grad| for both gradients, 1e-6 on the loss);
autograd to both inputs; the refusals of iou, params and topk. Skipped where no variant of the
library implements PAP."""

import pytest

torch = pytest.importorskip("torch", reason="torch is not importable (apt-get install python3-torch)")
np = pytest.importorskip("numpy", reason="numpy is not importable (apt-get install python3-numpy)")

import aploss.torch as apl  # noqa: E402
from aploss.published_pap import pap_loss_published  # noqa: E402
from aploss.synthetic import retinanet_like  # noqa: E402
from _util import case_array, case_meta, case_names, contract_errors  # noqa: E402

ROWS = [v for v in apl.variants("pap", "cpu") if v != "auto"]
pytestmark = pytest.mark.skipif(not ROWS, reason="no CPU variant of libaploss implements pap")
NAMES = case_names("pap")
SETS = ["retinanet", "rpn", "rcnn"]


def load(name):
    f = lambda x: case_array("pap", name, x)  # noqa: E731
    return (f("logits"), f("targets").to(torch.int8), f("iou"), f("ctrl"),
            f("grad_f64").double(), f("grad_iou_f64").double(), case_meta("pap", name))


def check(s, t, v, params, topk, g64, gv64, loss64, what):
    """pap_loss on every CPU row (and auto) against float64 gradients: both within 1e-6 of
    their max, the loss within 1e-6; returns the last row's logits gradient."""
    for row in ["auto"] + ROWS:
        x, y = s.clone().requires_grad_(), v.clone().requires_grad_()
        loss = apl.pap_loss(x, t, y, params, topk, variant=row)
        (3 * loss).backward()
        assert loss.dim() == 0 and loss.dtype == torch.float32
        rel, dl = contract_errors(x.grad / 3, loss, g64.reshape(s.shape), loss64)
        rel_v, _ = contract_errors(y.grad / 3, loss, gv64.reshape(v.shape), loss64)
        assert max(rel, dl, rel_v) <= 1e-6, (what, row, rel, dl, rel_v)
    return x.grad / 3


@pytest.mark.parametrize("name", NAMES)
def test_fixture(name):
    s, t, v, ctrl, g64, gv64, meta = load(name)
    k = int(meta["topk"])
    check(s, t, v, ctrl, k, g64, gv64, meta["loss_f64"], name)
    # The fixtures use the RetinaNet set: by name it is the same array.
    a = apl.pap_loss(s, t, v, ctrl, k)
    b = apl.pap_loss(s, t, v, "retinanet", k)
    assert a.item() == b.item()


def published(s, t, v, params, topk):
    """(grad64, grad_iou64, loss64) of the official loss transcribed, run in float64."""
    ctrl = params if isinstance(params, torch.Tensor) else apl._pap_params(params, "cpu")[0]
    x = s.to(torch.float64).requires_grad_()
    y = v.to(torch.float64).requires_grad_()
    loss = pap_loss_published(x, t, y, ctrl, topk)
    loss.backward()
    return x.grad, y.grad, loss.item()


def generated(seed, anchors=600, classes=10, pos_rate=0.02, dyadic=False):
    s, t = retinanet_like(1, anchors, classes, pos_rate=pos_rate, seed=seed)
    if dyadic:  # many equal logits: ties at the top-K cut and on breakpoints of the ramp
        s = (s * 4).round() / 4
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(int((t == 1).sum()), generator=g).float()
    return s, t, v


@pytest.mark.parametrize("params", SETS)
@pytest.mark.parametrize("topk", [0, 1500, 40])
def test_published_generated(params, topk):
    s, t, v = generated(61)
    g64, gv64, l64 = published(s, t, v, params, topk)
    check(s, t, v, params, topk, g64, gv64, l64, (params, topk))


@pytest.mark.parametrize("topk", [1, 37, 200, 0])
def test_published_ties_at_cut(topk):
    s, t, v = generated(62, anchors=300, classes=8, pos_rate=0.03, dyadic=True)
    valid = s[t != -1].reshape(-1).sort(descending=True).values
    if topk > 1:  # the cut falls inside a run of equal logits
        assert valid[topk - 1] == valid[topk], topk
    g64, gv64, l64 = published(s, t, v, "retinanet", topk)
    check(s, t, v, "retinanet", topk, g64, gv64, l64, ("ties", topk))


@pytest.mark.parametrize("params", SETS)
def test_published_near_breakpoints(params):
    """Negatives placed at float32(s_i + 2 X_m - 1) for every positive i and breakpoint m of
    H2 and H1: the float32 official code misclassifies such rows; the contract requires the
    exact (double) piece."""
    s, t, v = generated(63, anchors=100, classes=4, pos_rate=0.05)
    ctrl = apl._pap_params(params, "cpu")[0].double()
    flat_s, flat_t = s.reshape(-1).clone(), t.reshape(-1)
    pos = flat_s[flat_t == 1]
    neg = (flat_t == 0).nonzero().reshape(-1)
    at = [float(p) + 2 * float(x) - 1 for p in pos for r in (0, 4) for x in ctrl[r, 2:10:2]]
    n = min(len(at), neg.numel())
    flat_s[neg[:n]] = torch.tensor(at[:n], dtype=torch.float64).float()
    s = flat_s.reshape(s.shape)
    g64, gv64, l64 = published(s, t, v, params, 0)
    check(s, t, v, params, 0, g64, gv64, l64, ("near_bp", params))


def test_gradient_sums_to_zero_and_topk_all():
    s, t, v = generated(64, anchors=2000, classes=10, pos_rate=0.01)
    x = s.clone().requires_grad_()
    apl.pap_loss(x, t, v, "rpn", 0).backward()
    g = x.grad.double()
    assert g.abs().sum() > 0
    assert abs(g.sum().item()) <= 1e-6 * g.abs().sum().item()
    # topk 0 ranks every valid entry: the same as a K above the count of valid entries
    assert apl.pap_loss(s, t, v, "rpn", 0).item() == apl.pap_loss(s, t, v, "rpn", s.numel()).item()
    assert apl.pap_loss(s, t, v, "rpn", 0).item() != apl.pap_loss(s, t, v, "rpn", 100).item()


def test_no_positives_and_dtypes():
    s, t = retinanet_like(1, 50, 4, pos_rate=0.0, seed=65)
    x, y = s.clone().requires_grad_(), torch.zeros(0, requires_grad=True)
    loss = apl.pap_loss(x, t, y)
    loss.backward()
    assert loss.item() == 0 and torch.count_nonzero(x.grad) == 0 and y.grad.shape == (0,)
    s, t, v = generated(66, anchors=200, classes=4)
    x, y = s.double().requires_grad_(), v.double().requires_grad_()
    loss = apl.pap_loss(x, t, y, "rcnn", 0)
    loss.backward()
    assert loss.dtype == x.grad.dtype == y.grad.dtype == torch.float64


def test_refusals():
    s, t, v = generated(67, anchors=200, classes=4)
    npos = v.numel()
    with pytest.raises(ValueError, match=r"^iou has %d values: expected one per positive \(%d\)"
                       % (npos - 1, npos)):
        apl.pap_loss(s, t, v[1:])
    for bad_value, shown in ((1.5, r"1\.5"), (-0.25, r"-0\.25"), (float("nan"), "nan"),
                             (float("inf"), "inf")):
        bad = v.clone()
        bad[2] = bad_value
        with pytest.raises(ValueError, match=r"^iou\[2\] = %s: expected a finite value in "
                           r"\[0, 1\]" % shown):
            apl.pap_loss(s, t, bad)
    bad = v.double().clone()
    bad[1] = 1 + 1e-12  # would round to 1 in float32: refused before that
    with pytest.raises(ValueError, match=r"^iou\[1\] = 1: expected a finite value in \[0, 1\]"):
        apl.pap_loss(s, t, bad)
    with pytest.raises(ValueError, match=r"^iou: shape \[1, %d\]: expected one value per "
                       r"positive, 1-D" % npos):
        apl.pap_loss(s, t, v.reshape(1, -1))
    with pytest.raises(TypeError, match=r"^iou: expected a torch\.Tensor"):
        apl.pap_loss(s, t, [0.5] * npos)
    for k in (-3, 0.5, float("inf")):
        with pytest.raises(ValueError, match=r"^topk = %s: expected an integer K >= 1, or 0"
                           % str(k).replace(".", r"\.")):
            apl.pap_loss(s, t, v, topk=k)
    for k in ("x", True, None):
        with pytest.raises(TypeError, match=r"^topk: expected an int"):
            apl.pap_loss(s, t, v, topk=k)
    with pytest.raises(ValueError, match=r"^params = 'retina': expected 'retinanet', 'rpn', "
                       r"'rcnn' or a tensor"):
        apl.pap_loss(s, t, v, "retina")
    ctrl = apl._pap_params("retinanet", "cpu")[0]
    with pytest.raises(ValueError, match=r"^params: shape \[3, 12\]: expected \(5, 12\) or "
                       r"\(4, 12\)"):
        apl.pap_loss(s, t, v, ctrl[:3])
    with pytest.raises(ValueError, match=r"^params: shape \[5, 11\]"):
        apl.pap_loss(s, t, v, ctrl[:, :11])
    with pytest.raises(TypeError, match=r"^params: dtype torch\.int64"):
        apl.pap_loss(s, t, v, ctrl.long())
    bad = ctrl.clone()
    bad[2, 4] = bad[2, 2]  # I3: x2 = x1
    with pytest.raises(ValueError, match=r"^params: pap parameters\[2\] \(I3\): x2 = .* after "
                       r"x1 = .*: the x's must be strictly increasing"):
        apl.pap_loss(s, t, v, bad)
    bad = ctrl.clone()
    bad[1, 7] = 0.0  # I2: y3 below y2
    with pytest.raises(ValueError, match=r"^params: pap parameters\[1\] \(I2\): y3 = 0 after "
                       r"y2 = .*: the y's must not decrease"):
        apl.pap_loss(s, t, v, bad)
    with pytest.raises(TypeError, match=r"^params: expected 'retinanet', 'rpn', 'rcnn' or a "
                       r"torch\.Tensor, got list"):
        apl.pap_loss(s, t, v, ctrl.tolist())
    with pytest.raises(ValueError, match=r"variant 'pruned': does not implement loss pap; "
                       r"choices for loss pap on cpu: auto, "):
        apl.pap_loss(s, t, v, variant="pruned")
    bad = t.clone()
    bad.reshape(-1)[5] = 3
    with pytest.raises(ValueError, match=r"^targets\[5\] \(index \(0, 1, 1\)\) = 3: expected "
                       r"-1, 0 or 1"):
        apl.pap_loss(s, bad, v)


GPU_ROWS = [v for v in apl.variants("pap", "cuda") if v != "auto"]


@pytest.mark.skipif(not GPU_ROWS or not torch.cuda.is_available(),
                    reason="no CUDA device, or no GPU variant of libaploss implements pap")
@pytest.mark.parametrize("params", SETS)
@pytest.mark.parametrize("topk", [0, 37])
def test_cuda_rows(params, topk):
    """The device entry point (device_fn: logits, targets, IoUs, params and outputs on the GPU)
    against the float64 transcription, and the same bits on a second run."""
    s, t, v = generated(68, anchors=300, classes=8, pos_rate=0.03, dyadic=True)
    g64, gv64, l64 = published(s, t, v, params, topk)
    for row in ["auto"] + GPU_ROWS:
        out = []
        for _ in range(2):
            x, y = s.cuda().requires_grad_(), v.cuda().requires_grad_()
            loss = apl.pap_loss(x, t.cuda(), y, params, topk, variant=row)
            loss.backward()
            out.append((loss.item(), x.grad.cpu(), y.grad.cpu()))
        (l1, g1, gv1), (l2, g2, gv2) = out
        assert l1 == l2 and torch.equal(g1, g2) and torch.equal(gv1, gv2), row
        rel, dl = contract_errors(g1, l1, g64.reshape(s.shape), l64)
        rel_v, _ = contract_errors(gv1, l1, gv64, l64)
        assert max(rel, dl, rel_v) <= 1e-6, (row, params, topk, rel, dl, rel_v)
