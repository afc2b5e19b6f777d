"""The install paths agree: pyproject.toml, environment.yml, the Makefile and .ci/run."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


def pyproject() -> dict[str, Any]:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def environment() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "environment.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def conda_python_version(deps: list[Any]) -> tuple[int, ...]:
    for dep in deps:
        if isinstance(dep, str) and (m := re.fullmatch(r"python\s*=+\s*([\d.]+)\*?", dep)):
            return tuple(int(p) for p in m.group(1).split("."))
    raise AssertionError("environment.yml pins no python version")


def satisfies(version: tuple[int, ...], spec: str) -> bool:
    """A small PEP 440 check for the operators a requires-python uses (no pre-releases)."""
    for clause in spec.split(","):
        m = re.fullmatch(r"\s*(>=|<=|==|!=|>|<|~=)\s*([\d.]+)(\.\*)?\s*", clause)
        assert m, f"cannot read requires-python clause {clause!r}"
        op, text, _star = m.groups()
        bound = tuple(int(p) for p in text.split("."))
        width = len(bound)
        mine = (version + (0,) * width)[:width]
        ok = {
            ">=": mine >= bound,
            "<=": mine <= bound,
            ">": mine > bound,
            "<": mine < bound,
            "==": mine == bound,
            "!=": mine != bound,
            "~=": mine >= bound and mine[: width - 1] == bound[: width - 1],
        }[op]
        if not ok:
            return False
    return True


def test_satisfies_helper() -> None:
    assert satisfies((3, 11), ">=3.11")
    assert not satisfies((3, 10), ">=3.11")
    assert satisfies((3, 12), ">=3.11,<3.13")
    assert not satisfies((3, 13), ">=3.11,<3.13")


def test_environment_python_satisfies_requires_python() -> None:
    env = environment()
    assert env["name"] == "phase1"
    assert env["channels"] == ["conda-forge"]
    version = conda_python_version(env["dependencies"])
    assert satisfies(version, pyproject()["project"]["requires-python"])


def test_environment_installs_the_project_with_its_dev_extra() -> None:
    deps = environment()["dependencies"]
    assert "pip" in deps
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1
    installs = [re.sub(r"\s+", " ", line.strip()) for line in pip_sections[0]]
    # An editable install of "." with the dev extra pulls in every dependency of pyproject,
    # so the conda path and the pip path cannot drift apart.
    assert any(re.fullmatch(r"-e \.\[(?:[\w-]+,)*dev(?:,[\w-]+)*\]", line) for line in installs)
    assert "dev" in pyproject()["project"]["optional-dependencies"]


def test_pyproject_uses_a_license_classifier_not_the_deprecated_table() -> None:
    project = pyproject()["project"]
    assert "license" not in project
    assert "License :: OSI Approved :: MIT License" in project["classifiers"]


def test_ci_run_is_strict_executable_and_runs_make_test() -> None:
    script = REPO / ".ci" / "run"
    text = script.read_text(encoding="utf-8")
    assert os.access(script, os.X_OK)
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert re.search(r"^DEB_PACKAGES=.*\bjq\b", text, re.M)
    assert re.search(r"^\s*(?:exec\s+)?make test\s*$", text, re.M)


def test_makefile_has_the_documented_targets() -> None:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w.$()/-]+):(?!=)", text, re.M))
    assert {"test", "demo", "lab", "notebooks", "bench"} <= targets
    phony = re.search(r"^\.PHONY:(.*)$", text, re.M)
    assert phony and {"test", "demo", "lab", "notebooks", "bench"} <= set(phony.group(1).split())
    # recipes are tab-indented (no .RECIPEPREFIX override)
    assert ".RECIPEPREFIX" not in text
