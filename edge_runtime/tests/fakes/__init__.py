"""Fakes of NVIDIA's Python bindings (TensorRT per release, cuda-python 11.x/12+/13, pycuda) for the
TensorRT layer's tests on machines without a GPU. Each fake is written from NVIDIA's own sources and docs,
cited where the behaviour is defined, never from our code; `gpu.FakeGpu` is the device they share."""
