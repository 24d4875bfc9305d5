"""Every bad input raises the documented error, naming the tensor, the element and why."""
import math
import re

import pytest

torch = pytest.importorskip("torch", reason="torch is not importable (apt-get install python3-torch)")
pytest.importorskip("numpy", reason="numpy is not importable (apt-get install python3-numpy)")

import aploss.torch as apl  # noqa: E402

SHAPE = (2, 5, 4)


def good():
    torch.manual_seed(5)
    s = torch.randn(SHAPE)
    t = torch.zeros(SHAPE, dtype=torch.int8)
    t[0, 1, 2] = t[1, 4, 0] = 1
    t[0, 0, 0] = -1
    return s, t


def with_target(value, dtype=torch.int64, where=(1, 3, 2)):
    s, t = good()
    if not dtype.is_signed:
        t[t == -1] = 0  # -1 is 255 in uint8
    t = t.to(dtype)
    t[where] = value
    return s, t


def with_logit(value, where=(1, 3, 2), dtype=torch.float32):
    s, t = good()
    s = s.to(dtype)
    s[where] = value
    return s, t


# (name, build the call's (logits, targets, kwargs), exception, message regex)
CASES = [
    ("logits not a tensor", lambda: ([0.1, 0.2], torch.zeros(2), {}), TypeError,
     r"^logits: expected a torch\.Tensor, got list"),
    ("targets not a tensor", lambda: (torch.zeros(2), (0, 1), {}), TypeError,
     r"^targets: expected a torch\.Tensor, got tuple"),
    ("integer logits", lambda: (torch.zeros(SHAPE, dtype=torch.int32), good()[1], {}), TypeError,
     r"^logits: dtype torch\.int32: expected a floating dtype"),
    ("complex targets", lambda: (good()[0], good()[1].to(torch.complex64), {}), TypeError,
     r"^targets: dtype torch\.complex64"),
    ("shape mismatch", lambda: (good()[0], good()[1][0], {}), ValueError,
     r"^targets: shape \[5, 4\] does not match the shape of logits \[2, 5, 4\]"),
    ("device mix", lambda: (good()[0], good()[1].to("meta"), {}), ValueError,
     r"^targets are on meta but logits are on cpu: both must be on the same device"),
    ("unsupported device", lambda: (good()[0].to("meta"), good()[1].to("meta"), {}), ValueError,
     r"^logits are on device meta: aploss runs on cpu and cuda tensors"),
    ("nan logit", lambda: (*with_logit(math.nan), {}), ValueError,
     r"^logits\[34\] \(index \(1, 3, 2\)\) = nan: logits must be finite$"),
    ("inf logit", lambda: (*with_logit(math.inf, (0, 0, 1)), {}), ValueError,
     r"^logits\[1\] \(index \(0, 0, 1\)\) = inf: logits must be finite$"),
    ("-inf float16 logit", lambda: (*with_logit(-math.inf, dtype=torch.float16), {}), ValueError,
     r"^logits\[34\] \(index \(1, 3, 2\)\) = -inf: logits must be finite$"),
    ("float64 logit beyond float32", lambda: (*with_logit(1e39, dtype=torch.float64), {}),
     ValueError, r"^logits\[34\] \(index \(1, 3, 2\)\) = 1e\+39: outside the float32 range"),
    ("target 3 (int8)", lambda: (*with_target(3, torch.int8), {}), ValueError,
     r"^targets\[34\] \(index \(1, 3, 2\)\) = 3: expected -1, 0 or 1$"),
    ("target 3 (int64)", lambda: (*with_target(3), {}), ValueError,
     r"^targets\[34\] \(index \(1, 3, 2\)\) = 3: expected -1, 0 or 1$"),
    ("target -2", lambda: (*with_target(-2, torch.int32, (0, 0, 0)), {}), ValueError,
     r"^targets\[0\] \(index \(0, 0, 0\)\) = -2: expected -1, 0 or 1$"),
    ("target 257 (int64: would wrap to 1 in int8)", lambda: (*with_target(257), {}), ValueError,
     r"^targets\[34\] \(index \(1, 3, 2\)\) = 257: expected -1, 0 or 1$"),
    ("target 255 (uint8: would wrap to -1)", lambda: (*with_target(255, torch.uint8), {}),
     ValueError, r"^targets\[34\] \(index \(1, 3, 2\)\) = 255: expected -1, 0 or 1$"),
    ("target 0.5", lambda: (*with_target(0.5, torch.float32), {}), ValueError,
     r"^targets\[34\] \(index \(1, 3, 2\)\) = 0\.5: expected -1, 0 or 1$"),
    ("target nan", lambda: (*with_target(math.nan, torch.float64), {}), ValueError,
     r"^targets\[34\] \(index \(1, 3, 2\)\) = nan: expected -1, 0 or 1$"),
    ("delta 0", lambda: (*good(), {"delta": 0.0}), ValueError,
     r"^delta = 0: expected a finite value in \[2\^-100, 2\^100\]"),
    ("delta negative", lambda: (*good(), {"delta": -1.0}), ValueError, r"^delta = -1: expected"),
    ("delta nan", lambda: (*good(), {"delta": math.nan}), ValueError, r"^delta = nan: expected"),
    ("delta inf", lambda: (*good(), {"delta": math.inf}), ValueError, r"^delta = inf: expected"),
    ("delta too small", lambda: (*good(), {"delta": 1e-40}), ValueError,
     r"^delta = 1e-40: expected"),
    ("delta a string", lambda: (*good(), {"delta": "1"}), TypeError,
     r"^delta: expected a real number, got str"),
    ("unknown variant", lambda: (*good(), {"variant": "fastest"}), ValueError,
     r"^variant 'fastest': unknown; choices for loss ap on cpu: auto, .*\bsorted\b"),
    ("GPU variant on a CPU tensor", lambda: (*good(), {"variant": "cuda_sorted"}), ValueError,
     r"^variant 'cuda_sorted' runs on cuda tensors, logits are on cpu; choices for loss ap on "
     r"cpu: auto, .*\bsorted\b"),
    ("unknown scope", lambda: (*good(), {"scope": "anchor"}), ValueError,
     r"^scope = 'anchor': expected 'batch' or 'image'"),
    ("image scope on 0-dim", lambda: (torch.tensor(0.5), torch.tensor(1), {"scope": "image"}),
     ValueError, r"^scope='image' ranks each slice along the first dimension"),
    ("negative threads", lambda: (*good(), {"threads": -1}), ValueError, r"^threads = -1"),
    ("float threads", lambda: (*good(), {"threads": 1.5}), TypeError,
     r"^threads: expected an int, got float"),
]


@pytest.mark.parametrize("fn", ["ap_loss", "ap_loss_with_grad"])
@pytest.mark.parametrize("name,make,exc,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input(fn, name, make, exc, pattern):
    logits, targets, kw = make()
    before = [x.clone() for x in (logits, targets) if isinstance(x, torch.Tensor)
              and x.device.type != "meta"]
    with pytest.raises(exc) as info:
        getattr(apl, fn)(logits, targets, **kw)
    assert re.search(pattern, str(info.value)), str(info.value)
    after = [x for x in (logits, targets) if isinstance(x, torch.Tensor)
             and x.device.type != "meta"]
    # nothing modified (NaN compares equal to NaN here)
    assert all(torch.equal(a, b) or (a.is_floating_point() and a.dtype == b.dtype and
                                     torch.allclose(a, b, rtol=0, atol=0, equal_nan=True))
               for a, b in zip(after, before))


def test_image_scope_names_the_element_in_the_whole_tensor():
    s, t = with_target(3, torch.int8, (1, 3, 2))
    with pytest.raises(ValueError, match=r"^targets\[34\] \(index \(1, 3, 2\)\) = 3: "):
        apl.ap_loss(s, t, scope="image")
    s, t = with_logit(math.nan, (1, 0, 1))
    with pytest.raises(ValueError, match=r"^logits\[21\] \(index \(1, 0, 1\)\) = nan: "):
        apl.ap_loss(s, t, scope="image")


def test_good_inputs_pass():
    s, t = good()
    assert 0.0 <= apl.ap_loss(s, t).item() <= 1.0
    assert apl.ap_loss(s, t, torch.tensor(0.5)).item() >= 0  # delta as a 0-dim tensor
