"""Builds the optional C accelerator; everything else is in pyproject.toml.

``optional=True``: where no C compiler is found the build goes on without it and
spread runs on its pure-Python code paths (``spread.accelerated()`` says which).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "spread._speedups",
            sources=["spread/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
