"""One process of tests/python/test_distributed.py (started by torch.multiprocessing.spawn).

Every process joins a gloo group of `world` processes (a short group timeout, so that a bug shows
as an error rather than a hang), makes the 2-process subgroup of ranks 0 and 1, and runs every
scenario of the data file in order (the same order everywhere, as collectives need): its images
of the batch (scenario "split": images per process), through aploss.torch.ap_loss with the
scenario's group, scope and delta, then backward. It saves, per scenario, its loss, gradient and
traffic, or the exception it raised (type and message), in <out>/rank<r>.pt for the test to
compare with one process.
"""
import datetime
import os
import sys


def main(rank, world, init, data_path, out_dir, timeout_s):
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)  # several processes share 2 cores
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    import aploss.dist as ad
    import aploss.torch as apl
    pair = dist.new_group([0, 1])
    data = torch.load(data_path)
    out = {}
    for name, sc in data.items():
        if sc["procs"] == 2 and rank >= 2:
            continue
        group = pair if sc["procs"] == 2 else dist.group.WORLD
        split = sc["split"]
        lo = sum(split[:rank])
        s = sc["logits"][lo:lo + split[rank]].clone()
        t = sc["targets"][lo:lo + split[rank]]
        if sc.get("nan_rank") == rank:
            s.reshape(-1)[sc["nan_index"]] = float("nan")
        delta = sc.get("delta_by_rank", {}).get(rank, 1.0)
        real_histogram = ad._lib.lib.apl_sorted_histogram
        if sc.get("histogram_fails_on") == rank:  # a failure after the first collective

            def real_histogram_fails(*args):
                args[-1]._obj.msg = b"histogram: cannot allocate (simulated)"
                return 3  # APL_ERR_NOMEM
            ad._lib.lib.apl_sorted_histogram = real_histogram_fails
        try:
            if sc.get("method") == "gather":
                g, loss = ad.ap_grad_loss(s, t, delta, group=group, threads=1, method="gather")
                loss = torch.tensor(loss, dtype=torch.float32).item()  # as ap_loss returns it
            else:
                x = s.requires_grad_()
                lt = apl.ap_loss(x, t, delta, scope=sc.get("scope", "batch"), group=group,
                                 threads=1)
                lt.backward()
                g, loss = x.grad, lt.item()
            out[name] = {"loss": loss, "grad": g, "traffic": ad.last_traffic()}
        except Exception as e:  # the test checks who raised what
            out[name] = {"error": type(e).__name__, "message": str(e)}
        ad._lib.lib.apl_sorted_histogram = real_histogram
    torch.save(out, os.path.join(out_dir, "rank%d.pt" % rank))
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit("run by tests/python/test_distributed.py")
