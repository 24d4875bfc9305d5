"""aploss.dist_demo: AP-Loss over a batch split across processes, shown on one machine.

    PYTHONPATH=python /usr/bin/python3 -m aploss.dist_demo --procs 4 --batch 8

Generates a RetinaNet-like batch (aploss.synthetic.retinanet_like), splits it by images over
--procs processes (torch.multiprocessing, gloo on the CPU, rendezvous through a file in a
temporary directory), and has every process run aploss.torch.ap_loss(..., group=WORLD) and
backward on its own images. Prints each process's loss, the bytes it handed to the collectives
(aploss.dist.last_traffic: header, positives' logits, histogram) and the time of its step, the
bytes the alternative (all-gathering every logit and target) would send, and whether the loss
and every gradient bit equal one process running ap_loss on the whole batch. Exit status 0 when
they are equal, 1 when not, 2 on a usage error.
"""
import argparse
import datetime
import os
import sys
import tempfile
import time


def _split(images, procs):
    """Images per process, as even as possible, the larger parts first."""
    return [images // procs + (1 if r < images % procs else 0) for r in range(procs)]


def _worker(rank, procs, init, tmp, split, delta, threads):
    import torch
    import torch.distributed as dist
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // procs))
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=procs,
                            timeout=datetime.timedelta(seconds=600))
    import aploss.dist as ad
    import aploss.torch as apl
    s, t = torch.load(os.path.join(tmp, "batch.pt"))
    lo = sum(split[:rank])
    x = s[lo:lo + split[rank]].clone().requires_grad_()
    t = t[lo:lo + split[rank]]
    dist.barrier()
    t0 = time.perf_counter()
    loss = apl.ap_loss(x, t, delta, group=dist.group.WORLD, threads=threads)
    loss.backward()
    seconds = time.perf_counter() - t0
    torch.save({"loss": loss.item(), "grad": x.grad, "traffic": ad.last_traffic(),
                "seconds": seconds, "positives": int((t == 1).sum())},
               os.path.join(tmp, "rank%d.pt" % rank))
    dist.destroy_process_group()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m aploss.dist_demo",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, default=4, help="processes (default 4)")
    ap.add_argument("--batch", type=int, default=8, help="images (default 8)")
    ap.add_argument("--anchors", type=int, default=None,
                    help="anchors per image (default RetinaNet's 32736)")
    ap.add_argument("--classes", type=int, default=80, help="classes (default 80)")
    ap.add_argument("--dist", default="mid", choices=("early", "mid", "late"),
                    help="score distribution (default mid)")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--delta", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1,
                    help="library threads per process (default 1)")
    a = ap.parse_args(argv)
    if a.procs < 1 or a.batch < 0 or a.threads < 0 or (a.anchors is not None and a.anchors < 1):
        ap.print_usage(sys.stderr)
        print("dist_demo: --procs >= 1, --batch >= 0, --anchors >= 1, --threads >= 0",
              file=sys.stderr)
        return 2

    import torch
    import torch.multiprocessing as mp
    import aploss.torch as apl
    from aploss.synthetic import RETINANET_ANCHORS, retinanet_like
    anchors = a.anchors or RETINANET_ANCHORS
    s, t = retinanet_like(a.batch, anchors, a.classes, dist=a.dist, seed=a.seed)
    split = _split(a.batch, a.procs)
    print("batch: %d images x %d anchors x %d classes (%s scores, seed %d) = %d elements, "
          "%d positives, delta %g" % (a.batch, anchors, a.classes, a.dist, a.seed, s.numel(),
                                      int((t == 1).sum()), a.delta))
    print("%d processes (gloo, CPU), images per process: %s"
          % (a.procs, " ".join(str(k) for k in split)))
    with tempfile.TemporaryDirectory(prefix="aploss-dist-demo-") as tmp:
        torch.save((s, t), os.path.join(tmp, "batch.pt"))
        mp.spawn(_worker, args=(a.procs, "file://" + os.path.join(tmp, "rendezvous"), tmp,
                                split, a.delta, a.threads), nprocs=a.procs, join=True)
        runs = [torch.load(os.path.join(tmp, "rank%d.pt" % r)) for r in range(a.procs)]
    t0 = time.perf_counter()
    grad, loss = apl.ap_loss_with_grad(s, t, a.delta, threads=a.threads)
    one_s = time.perf_counter() - t0
    per = s[0].numel() if a.batch else 0
    equal = True
    lo = 0
    for r, run in enumerate(runs):
        tr = run["traffic"]
        hi = lo + split[r]
        same = run["loss"] == loss.item() and torch.equal(
            run["grad"].view(torch.int32), grad[lo:hi].contiguous().view(torch.int32))
        equal &= same
        print("rank %d: %d images, %d positives, loss %.9g, sent %d bytes (%s), step %.3f s%s"
              % (r, split[r], run["positives"], run["loss"], tr["bytes_sent"],
                 ", ".join("%s %d" % kv for kv in tr["parts"].items()), run["seconds"],
                 "" if same else "  DIFFERS from one process"))
        lo = hi
    print("one process on the whole batch: loss %.9g, step %.3f s" % (loss.item(), one_s))
    print("all-gathering every logit and target instead: %d bytes per process"
          % (8 * 5 + 5 * max(split) * per))
    print("bitwise equal to one process (loss and every gradient bit): %s"
          % ("yes" if equal else "NO"))
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
