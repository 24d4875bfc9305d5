"""aploss: Python bindings of libaploss, the exact AP-Loss core (see README.md, "PyTorch").

    PYTHONPATH=python /usr/bin/python3 -c "import aploss.torch"

aploss.torch      ap_loss, ap_loss_with_grad: the loss for PyTorch training (CPU and CUDA).
aploss.dist       the driver of ap_loss(..., group=G): one ranking over a batch split across
                  torch.distributed processes, O(|P|) traffic (python -m aploss.dist_demo shows it).
aploss.published  ap_loss_published: the project's PyTorch transcription of the published
                  AP_loss loop (the baseline the library is compared and timed against).

The shared library is build/libaploss.so under the repository root, or the file named by the
environment variable APLOSS_LIBRARY; importing aploss.torch without either raises an
ImportError that says how to build it. Importing this package alone loads nothing.
"""
