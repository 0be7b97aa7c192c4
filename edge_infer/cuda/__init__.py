"""The CUDA backend (kernels/*.cu compiled for the device's SM, pycuda streams and events).

Not implemented yet: ``edge-infer build --backend cuda`` reports that the backend is not
available. This is the only package that will import pycuda (lazily).
"""
