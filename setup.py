"""Builds the optional compiled CPU kernel; everything else is declared in pyproject.toml.

The kernel is a plain C++ shared library (no PyTorch headers) loaded with ctypes. ``optional=True``
keeps installation working without a compiler: the op then falls back to pure PyTorch and says so.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dcf.ops._correlation_cpu",
            sources=["dcf/ops/csrc/correlation_cpu.cpp"],
            language="c++",
            extra_compile_args=["-O3", "-std=c++17", "-fvisibility=hidden", "-fopenmp", "-Wno-psabi"],
            extra_link_args=["-fopenmp"],
            optional=True,
        )
    ]
)
