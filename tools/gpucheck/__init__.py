"""The GPU check (issue 14 §7): one run on a machine with an NVIDIA GPU and no network.

``tools/gpu_check.sh`` runs ``python -m tools.gpucheck``: environment report, pycuda from
the vendored source distribution (``vendor/pycuda/``), the ``gpu``-marked tests, the engine
benchmarks (demo detector and YOLOv8n-640 at FP32/FP16/INT8, batch 1 and 8) against PyTorch
when it is importable, and a short daemon benchmark. Every step has its own timeout inside
one overall budget; a step that cannot run records ``skipped: <reason>``. The driver itself
needs only the standard library, so it can report what is missing before anything is
installed.
"""
