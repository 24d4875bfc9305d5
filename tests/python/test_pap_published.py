"""aploss.published_pap against the fixtures of tests/cases/pap (the official code run in
float64): the transcription in float64 must reproduce the loss, the logits' gradient and the
IoUs' gradient (docs/SPEC_PAP.md, "Agreement", with room to spare). Skipped, with the reason,
where torch or numpy is missing."""

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
np = pytest.importorskip("numpy", reason="numpy is not installed")

from aploss.published_pap import pap_loss_published  # noqa: E402

from _util import case_array, case_meta, case_names  # noqa: E402

NAMES = case_names("pap")


def _load(name, f):
    return case_array("pap", name, f)


@pytest.mark.parametrize("name", NAMES)
def test_fixture(name):
    meta = case_meta("pap", name)
    s = _load(name, "logits").to(torch.float64).requires_grad_(True)
    t = _load(name, "targets")
    v = _load(name, "iou").to(torch.float64).requires_grad_(True)
    ctrl = _load(name, "ctrl")
    assert ctrl.dtype == torch.float32 and ctrl.shape[1] == 12
    loss = pap_loss_published(s, t, v, ctrl, int(meta["topk"]))
    loss.backward()
    g64, gv64 = _load(name, "grad_f64"), _load(name, "grad_iou_f64")
    assert abs(loss.item() - meta["loss_f64"]) <= 1e-12
    assert (s.grad - g64).abs().max().item() <= 1e-12 * g64.abs().max().item()
    assert (v.grad - gv64).abs().max().item() <= 1e-12 * gv64.abs().max().item()


def test_no_positives():
    s = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 0, -1], dtype=torch.int8)
    ctrl = _load(NAMES[0], "ctrl")
    loss = pap_loss_published(s, t, torch.zeros(0, dtype=torch.float64), ctrl, 0)
    loss.backward()
    assert loss.item() == 0.0 and s.grad.abs().max().item() == 0.0
