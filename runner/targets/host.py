"""The host target: this machine's kernel. pytest collects one item per
(probe test, family) through runner/plugin.py, which runs each under
build/sp-isolate and writes the report; this module only builds the
pytest command line from `runner check`'s options."""
from __future__ import annotations

import os
from pathlib import Path

from .. import discover

ROOT = discover.ROOT


def pytest_args(a, build: Path) -> list:
    args = ["-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT),
            "--sp-timeout", str(a.timeout), "--sp-reports", a.reports,
            "--sp-build", str(build), "-p", "no:cacheprovider"]
    if a.preload:
        args += ["--sp-preload", a.preload]
    if getattr(a, "wrap", None):
        args += ["--sp-wrap", a.wrap]
    if getattr(a, "isolate", None):
        args += ["--sp-isolate", a.isolate]
    if getattr(a, "expect", None):
        args += ["--sp-expect", a.expect]
    if a.host:
        args.append("--sp-host")
    for f in a.family or []:
        args += ["--sp-family", f]
    if a.repeat > 1:
        args += ["--sp-repeat", str(a.repeat)]
    if a.keyword:
        args += ["-k", a.keyword]
    if a.marker:
        args += ["-m", a.marker]
    if a.workers:
        args += ["-n", a.workers]
    return args + ["-v"] * a.verbose + (["-q"] if a.quiet else [])


def run(a, build: Path, nodes: list) -> int:
    """Run the selection (pytest node ids); pytest's exit code."""
    import pytest
    os.chdir(ROOT)
    return pytest.main(pytest_args(a, build) + nodes)
