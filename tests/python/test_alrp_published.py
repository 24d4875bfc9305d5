"""aploss.published_alrp against the fixtures of tests/cases/alrp (the official code run in
float64): the transcription in float64 must reproduce loss_cls, loss_loc, the logits' gradient
and the errors' gradient within 1e-6 (docs/SPEC_ALRP.md, "Agreement"). Skipped, with the
reason, where torch or numpy is missing."""

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
np = pytest.importorskip("numpy", reason="numpy is not installed")

from aploss.published_alrp import alrp_loss_published  # noqa: E402

from _util import case_array, case_meta, case_names  # noqa: E402

NAMES = case_names("alrp")


def _load(name, f):
    return case_array("alrp", name, f)


@pytest.mark.parametrize("name", NAMES)
def test_fixture(name):
    meta = case_meta("alrp", name)
    s = _load(name, "logits").to(torch.float64)
    t = _load(name, "targets")
    e = _load(name, "eloc").to(torch.float64)
    grad, grad_e, loss_cls, loss_loc = alrp_loss_published(s, t, e, meta["delta"], meta["eps"])
    g64, ge64 = _load(name, "grad_f64").reshape(-1), _load(name, "grad_eloc_f64")
    assert abs(loss_cls.item() - meta["loss_cls_f64"]) <= 1e-6
    assert abs(loss_loc.item() - meta["loss_loc_f64"]) <= 1e-6
    assert (grad - g64).abs().max().item() <= 1e-6 * g64.abs().max().item()
    assert (grad_e - ge64).abs().max().item() <= 1e-6 * ge64.abs().max().item()


def test_no_positives():
    s = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    t = torch.tensor([0, 0, -1], dtype=torch.int8)
    grad, grad_e, loss_cls, loss_loc = alrp_loss_published(s, t, torch.zeros(0))
    assert grad.abs().max().item() == 0.0 and grad_e.numel() == 0
    assert loss_cls.item() == 0.0 and loss_loc.item() == 0.0
