"""The one thing pyproject.toml cannot say without an experimental setuptools table: the
optional C module of byte-plane loops (ckptvc/objects/_planes.c). Optional, so an install
without a C compiler still works, on the numpy loops of ckptvc.objects.planes_kernels."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ckptvc.objects._planes", ["ckptvc/objects/_planes.c"], optional=True)])
