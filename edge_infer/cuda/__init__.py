"""The CUDA backend's kernel library: ``kernels/*.cu`` compiled for the device's SM, and the
same sources run on any CPU by the emulator.

- :mod:`edge_infer.cuda.library`: the explicit registry of kernel entry points
  (:class:`~edge_infer.cuda.library.KernelSpec`), one params module per concept.
- :mod:`edge_infer.cuda.emulator`: the ``.cu`` sources built with the host C++ compiler
  (plain, AddressSanitizer, ThreadSanitizer) and launched through ctypes.
- :mod:`edge_infer.cuda.compile`: NVRTC compilation to cubins for sm_72/sm_87/sm_90 with the
  compiler's resource report; :mod:`edge_infer.cuda.occupancy` turns it into occupancy.

``docs/cuda-kernels.md`` describes the CUDA subset the kernels are written in. This is the
only package that imports pycuda (lazily); importing it needs neither a GPU nor a compiler.
"""
