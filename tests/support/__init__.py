"""What the tests share and only the tests need: tiny checkpoints, the ``dcf`` command as a
subprocess, CMake and CUDA builds, the Docker image, and the correlation kernel's helpers. Media and
server processes, which the benchmarks use too, are in :mod:`dcf.testing`."""
