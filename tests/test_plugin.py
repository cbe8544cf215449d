"""A third-party package registers a family through the ``metarl_bench.families`` entry point.

The example package in ``tests/plugin_example`` (the README's "Register a new family"
example) is pip-installed into the running environment, offline, then seen from fresh
interpreters: ``family_ids()`` lists it and ``check_family`` passes on it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent / "plugin_example"
DIST = "metarl-corridor"
FAMILY_ID = "MyLab/Corridor-v0"


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.fixture
def installed_plugin(tmp_path: Path):
    # Build from a copy so that no build/ or *.egg-info lands in the repository.
    src = shutil.copytree(EXAMPLE, tmp_path / "plugin_example")
    result = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(src))
    assert result.returncode == 0, f"pip install of the example plugin failed:\n{result.stdout}\n{result.stderr}"
    try:
        yield
    finally:
        out = _pip("uninstall", "-y", "-q", DIST)
        assert out.returncode == 0, out.stderr


def test_example_plugin_is_short_enough_for_the_readme():
    lines = (EXAMPLE / "metarl_corridor.py").read_text().splitlines()
    assert len(lines) < 40


def test_installed_plugin_is_listed_and_passes_check_env(installed_plugin):
    listed = _python("import metarl_bench; print(metarl_bench.family_ids())")
    assert listed.returncode == 0, listed.stderr
    assert FAMILY_ID in listed.stdout
    assert "MetaRL/Navigation2D-v0" in listed.stdout  # the suite's own families are still there

    checked = _python(
        "from metarl_bench.checks import check_family, format_report\n"
        "from metarl_bench.family import family_spec\n"
        f"results = check_family({FAMILY_ID!r})\n"
        "print(format_report(results))\n"
        f"print('provider:', family_spec({FAMILY_ID!r}).provider)\n"
        "raise SystemExit(0 if all(r.passed for r in results) else 1)\n"
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "batched vs single envs" in checked.stdout
    assert f"provider: {DIST}" in checked.stdout

