"""Shared test setup: headless matplotlib, deterministic hypothesis, a throwaway config."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")  # before anything imports matplotlib

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from phase1.config import Config, load_config  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# derandomize: the same examples every run, so CI failures reproduce locally;
# print_blob: a failure prints the @reproduce_failure line anyway.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def tmp_config(tmp_path: Path) -> Config:
    """configs/test.yaml with the WAL, snapshot and workspace inside ``tmp_path``."""
    return load_config(REPO / "configs" / "test.yaml").replace(
        wal_path=str(tmp_path / "wal.log"),
        snapshot_path=str(tmp_path / "snapshot.json"),
        workspace=str(tmp_path / "workspace"),
    )
