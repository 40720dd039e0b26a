"""What a user installing arcoflow from the package index relies on: the license, the declared
dependencies and extras, README links that work there, and an sdist that holds its tests."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirement(requirements: list[str], name: str) -> str:
    [found] = [r for r in requirements if re.match(rf"{re.escape(name)}\b", r)]
    return found


def test_the_license_is_spdx_with_its_file() -> None:
    project = PROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    # PEP 639 metadata needs setuptools 77 to build.
    assert PROJECT["build-system"]["requires"] == ["setuptools>=77"]


def test_dependencies_have_the_tested_lower_bounds() -> None:
    dependencies = PROJECT["project"]["dependencies"]
    assert _requirement(dependencies, "msgspec") == "msgspec>=0.18.6"
    assert _requirement(dependencies, "cattrs") == "cattrs>=23.2.1"
    assert _requirement(dependencies, "tzdata").startswith("tzdata>=")


def test_the_extras_testing_and_metrics_and_the_dev_set_that_holds_them() -> None:
    extras = PROJECT["project"]["optional-dependencies"]
    assert _requirement(extras["testing"], "hypothesis").startswith("hypothesis>=")
    assert _requirement(extras["metrics"], "prometheus_client").startswith("prometheus_client>=")
    (own,) = [r for r in extras["test"] if r.startswith("arcoflow[")]
    held = set(own.removeprefix("arcoflow[").removesuffix("]").split(","))
    assert held == set(extras) - {"test"}  # CI installs `test`: every extra is tested


def test_the_min_versions_script_pins_every_lower_bound() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "min_versions.py"), "testing", "metrics"],
        capture_output=True,
        text=True,
        check=True,
    )
    pins = done.stdout.split()
    assert "msgspec==0.18.6" in pins and "hypothesis==6.100" in pins
    assert "prometheus_client==0.20" in pins and "pytest==8" in pins
    assert len(pins) == len(PROJECT["project"]["dependencies"]) + 3
    run = (ROOT / ".ci" / "run").read_text()
    assert "bash .ci/min-versions" in run


def test_readme_links_work_on_the_package_index() -> None:
    """The index renders the README away from the repository: a relative link is dead
    there. Paths are named in backticks instead, and the sdist ships every one of them."""
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [t for t in targets if not re.match(r"https?://", t)]
    assert not relative, f"relative links break on the package index: {relative}"


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("dist")
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    name = done.stdout.split()[-1]
    with tarfile.open(out / name) as archive:
        return [m.split("/", 1)[1] for m in archive.getnames() if "/" in m]


def test_the_sdist_holds_the_license_tests_docs_and_examples(sdist: list[str]) -> None:
    for path in (
        "LICENSE",
        "tests/conftest.py",
        "tests/kernel/test_store.py",
        "docs/plugins.md",
        "examples/arcoflow.toml",
        "spec/SPEC.md",
        ".ci/min-versions",
    ):
        assert path in sdist, path
    assert not [m for m in sdist if "__pycache__" in m or m.endswith(".pyc")]


def test_every_path_the_readme_names_is_in_the_sdist(sdist: list[str]) -> None:
    text = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`((?:docs|spec|examples|benchmarks|tests)/[\w./-]*)`", text))
    assert named
    for path in named:
        assert any(m == path.rstrip("/") or m.startswith(path) for m in sdist), path
