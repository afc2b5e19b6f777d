"""Only the optional C accelerator is built here; all metadata lives in pyproject.toml.

``phase1._walcheck`` reads the WAL's lines (checksums, fields) at C speed during recovery,
and frames the writer's common records; ``phase1._replay`` applies the records a busy
log is made of (``QueueCore.replay``'s fast moves) at C speed.
``optional=True``: without a C compiler the install still succeeds, and ``phase1.wal`` and
``phase1.core`` use their pure-Python paths (same answers, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "phase1._walcheck",
            ["phase1/_walcheck.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        ),
        Extension(
            "phase1._replay",
            ["phase1/_replay.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        ),
    ]
)
