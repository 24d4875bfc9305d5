"""ap_loss(group=...): a batch split across processes (gloo, CPU) ranks exactly as one process.

One spawn of 4 processes (tests/python/_dist_worker.py) runs every scenario below in order, on
the whole group or on the subgroup of ranks 0 and 1; each test then compares what the processes
saved with one process running aploss.torch (variant auto = sorted) on the concatenated batch:
the loss and every gradient bit must be equal. Small anchor counts keep it fast; one scenario is
the full RetinaNet batch 8 (2.1e7 elements) on 2 processes.
"""
import os
import tempfile

import pytest

torch = pytest.importorskip("torch", reason="torch is not importable (apt-get install python3-torch)")
pytest.importorskip("numpy", reason="numpy is not importable (apt-get install python3-numpy)")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available in this torch build", allow_module_level=True)

import aploss.torch as apl  # noqa: E402
from aploss.synthetic import retinanet_like  # noqa: E402

WORLD = 4
GROUP_TIMEOUT_S = 60   # the group's collective timeout: a hang becomes an error in the workers
JOIN_TIMEOUT_S = 240   # and this one ends the test if the workers themselves never finish


def _fixed_positives(images, anchors, classes, per_image, seed):
    """Scores with exactly per_image positives per image (the same positions and scores for any
    anchor count, so that only the negatives grow)."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn((images, anchors, classes), generator=g) * 2 - 5
    t = torch.zeros((images, anchors, classes), dtype=torch.int8)
    pg = torch.Generator().manual_seed(seed + 1)
    for b in range(images):
        idx = torch.randperm(64 * classes, generator=pg)[:per_image]
        t[b].reshape(-1)[idx] = 1
        s[b].reshape(-1)[idx] = torch.randn(per_image, generator=pg)
    return s, t


def _ties():
    """Positives of equal logits on different processes (0.0, -0.0, 1.5, the smallest
    normal float), the order of the ranks must not matter."""
    s, t = retinanet_like(4, 200, 10, pos_rate=0.0, seed=31)
    vals = [0.0, -0.0, 1.5, 1.5, 1.17549435e-38, 0.0, 1.5, -0.0]
    for b in range(4):
        for j, v in enumerate(vals[b:b + 3]):
            s[b, 7 * j + b, j] = v
            t[b, 7 * j + b, j] = 1
    return s, t


def _scenarios():
    small = retinanet_like(8, 1024, 80, pos_rate=0.01, seed=11)
    nopos = [x.clone() for x in retinanet_like(8, 1024, 80, pos_rate=0.01, seed=12)]
    nopos[1][0:3][nopos[1][0:3] == 1] = 0  # the images of rank 0 below have no positives
    few, many = (_fixed_positives(4, a, 80, 6, seed=13) for a in (128, 1024))
    sc = {}

    def add(name, data, split, procs=WORLD, **kw):
        sc[name] = dict(logits=data[0], targets=data[1], split=split, procs=procs, **kw)

    add("world4_even", small, [2, 2, 2, 2])
    add("pair_even", small, [4, 4], procs=2)
    add("world4_unequal_empty", small, [1, 4, 0, 3])  # rank 2 holds no elements
    add("world4_no_positives", nopos, [3, 1, 2, 2])
    add("world4_ties", _ties(), [1, 1, 1, 1])
    add("world4_nan_on_rank1", small, [2, 2, 2, 2], nan_rank=1, nan_index=4321)
    add("world4_delta_mismatch", small, [2, 2, 2, 2], delta_by_rank={3: 0.5})
    add("world4_histogram_fails_on_rank2", small, [2, 2, 2, 2], histogram_fails_on=2)
    add("world4_gather", small, [1, 2, 3, 2], method="gather")
    add("world4_image_scope", small, [2, 2, 2, 2], scope="image")
    add("traffic_few_anchors", few, [1, 1, 1, 1])
    add("traffic_8x_anchors", many, [1, 1, 1, 1])
    add("world4_after_errors", small, [2, 3, 1, 2])  # the group still works after the errors
    add("pair_retinanet_batch8", retinanet_like(8, seed=12345), [4, 4], procs=2)
    return sc


@pytest.fixture(scope="module")
def runs():
    """(scenarios, [per-rank results]) of one spawn of WORLD processes."""
    import torch.multiprocessing as mp
    import _dist_worker
    sc = _scenarios()
    with tempfile.TemporaryDirectory(prefix="aploss-dist-") as tmp:
        data = os.path.join(tmp, "data.pt")
        torch.save(sc, data)
        init = "file://" + os.path.join(tmp, "rendezvous")
        ctx = mp.spawn(_dist_worker.main, args=(WORLD, init, data, tmp, GROUP_TIMEOUT_S),
                       nprocs=WORLD, join=False)
        import time
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while not ctx.join(timeout=5):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    p.kill()
                pytest.fail("the %d processes did not finish within %d s" % (WORLD,
                                                                            JOIN_TIMEOUT_S))
        results = [torch.load(os.path.join(tmp, "rank%d.pt" % r)) for r in range(WORLD)]
    return sc, results


def _bits(x):
    return x.detach().contiguous().view(torch.int32)


def _check_exact(sc, results, name):
    """Every process of the scenario: the one-process loss, and its slice of the one-process
    gradient, bit for bit."""
    s = sc[name]
    grad, loss = apl.ap_loss_with_grad(s["logits"], s["targets"])
    lo = 0
    for r in range(s["procs"]):
        got = results[r][name]
        assert "error" not in got, "rank %d: %s" % (r, got)
        assert got["loss"] == loss.item(), (r, got["loss"], loss.item())
        hi = lo + s["split"][r]
        assert got["grad"].shape == grad[lo:hi].shape
        assert torch.equal(_bits(got["grad"]), _bits(grad[lo:hi])), "rank %d gradient" % r
        lo = hi
    return loss.item()


@pytest.mark.parametrize("name", ["world4_even", "pair_even", "world4_unequal_empty",
                                  "world4_no_positives", "world4_ties", "world4_gather",
                                  "world4_after_errors", "traffic_few_anchors",
                                  "traffic_8x_anchors"])
def test_bitwise_equal_to_one_process(runs, name):
    sc, results = runs
    loss = _check_exact(sc, results, name)
    assert 0.0 < loss < 1.0  # a real ranking, not the no-positive answer


def test_full_retinanet_batch8_on_two_processes(runs):
    sc, results = runs
    _check_exact(sc, results, "pair_retinanet_batch8")
    t = results[0]["pair_retinanet_batch8"]["traffic"]
    assert t["processes"] == 2 and t["elements"] == 8 * 32736 * 80


def test_no_positives_on_a_process(runs):
    sc, results = runs
    s = sc["world4_no_positives"]
    assert int((s["targets"][:3] == 1).sum()) == 0 and int((s["targets"] == 1).sum()) > 0
    assert results[0]["world4_no_positives"]["grad"].abs().max().item() > 0  # its negatives


def test_image_scope_with_group_needs_no_communication(runs):
    sc, results = runs
    s = sc["world4_image_scope"]
    for r in range(WORLD):
        got = results[r]["world4_image_scope"]
        lo = sum(s["split"][:r])
        g, l = apl.ap_loss_with_grad(s["logits"][lo:lo + 2], s["targets"][lo:lo + 2],
                                     scope="image")
        assert got["loss"] == l.item() and torch.equal(_bits(got["grad"]), _bits(g))
        # no collective ran: the traffic record is still the previous scenario's
        assert got["traffic"]["method"] == "gather"
    # equal parts: the mean of the processes' losses is the one-process image-scope loss
    # (float32 losses), and each image's gradient is the one-process one times 8 / 2 (exact)
    gw, whole = apl.ap_loss_with_grad(s["logits"], s["targets"], scope="image")
    mean = sum(results[r]["world4_image_scope"]["loss"] for r in range(WORLD)) / WORLD
    assert abs(mean - whole.item()) <= 1e-6
    local = torch.cat([results[r]["world4_image_scope"]["grad"] for r in range(WORLD)])
    assert torch.equal(local / 4, gw)


def test_traffic_is_order_positives(runs):
    sc, results = runs
    for r in range(WORLD):
        few = results[r]["traffic_few_anchors"]["traffic"]
        many = results[r]["traffic_8x_anchors"]["traffic"]
        assert many["elements"] == 8 * few["elements"]
        assert many["positives"] == few["positives"] == 24
        assert many["bytes_sent"] == few["bytes_sent"], (few, many)
        # header 40, 6 padded positives, the histogram of 2*24 segments and 4 error words
        assert few["bytes_sent"] == 40 + 4 * 6 + 8 * (3 * 48 + WORLD)
    # the alternative grows with the elements: every logit and target
    g = results[0]["world4_gather"]["traffic"]
    assert g["bytes_sent"] == 40 + 5 * 3 * 1024 * 80


def test_bad_input_on_one_process_raises_everywhere(runs):
    sc, results = runs
    bad = results[1]["world4_nan_on_rank1"]
    assert bad["error"] == "ValueError"
    assert bad["message"].startswith("logits[4321] (index (0, 54, 1)) = nan: logits must be "
                                     "finite"), bad["message"]
    for r in (0, 2, 3):
        got = results[r]["world4_nan_on_rank1"]
        assert got["error"] == "RuntimeError", got
        assert "failed on rank 1 " in got["message"] and "logits must be finite" in \
            got["message"], got["message"]


def test_delta_mismatch_raises_everywhere(runs):
    sc, results = runs
    for r in range(WORLD):
        got = results[r]["world4_delta_mismatch"]
        assert got["error"] == "ValueError", got
        assert "delta differs" in got["message"] and "rank 3: 0.5" in got["message"]


def test_group_needs_initialized_distributed():
    s, t = retinanet_like(1, 10, 4, seed=1)
    with pytest.raises(ValueError, match="not initialized"):
        apl.ap_loss(s, t, group=object())


def test_failure_after_the_first_collective_raises_everywhere(runs):
    """A library failure in the plan or the histogram (here a simulated out-of-memory on rank 2)
    travels in the histogram's all_reduce: rank 2 raises its error, the others name it."""
    sc, results = runs
    got = results[2]["world4_histogram_fails_on_rank2"]
    assert got["error"] == "RuntimeError" and "APL_ERR_NOMEM" in got["message"], got
    for r in (0, 1, 3):
        got = results[r]["world4_histogram_fails_on_rank2"]
        assert got["error"] == "RuntimeError", got
        assert "failed on rank 2 " in got["message"] and "(simulated)" in got["message"], got
