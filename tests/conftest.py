"""Shared helpers for the project's own tests."""
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner import execute  # noqa: E402

BUILD = ROOT / "build"
ISOLATE = BUILD / "sp-isolate"
MISBEHAVE = BUILD / "test-probes" / "misbehave"
FAULTLIB = BUILD / "libspfault.so"


def pytest_configure(config):
    for p in (ISOLATE, MISBEHAVE, FAULTLIB):
        if not p.exists():
            raise pytest.UsageError("%s is not built: run `make test`, which builds first" % p)


def item(test, family="none", binary=MISBEHAVE, probe="misbehave", ids=("SELF",)):
    return execute.Item(probe=probe, binary=str(binary), test=test, family=family, ids=list(ids))


def settings(**kw):
    kw.setdefault("isolate", str(ISOLATE))
    kw.setdefault("timeout_s", 5.0)
    return execute.Settings(**kw)


def processes_running(needle: str) -> list:
    """Pids of live processes whose command line mentions needle."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if needle in cmd:
            found.append(int(d.name))
    return found


def new_tag() -> str:
    """A value for SOCKPROBE_TEST_TAG: every process of one test's run
    inherits it, so leftovers of this run (and only of this run) can be
    found, whatever else runs on the machine."""
    return uuid.uuid4().hex


def tagged(tag: str) -> list:
    """Live processes carrying the tag, and zombies whose parent does."""
    want = ("SOCKPROBE_TEST_TAG=" + tag).encode()
    live, zombies = set(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            rest = stat[stat.rindex(")") + 2:].split()
            if rest[0] == "Z":
                zombies.append((int(d.name), int(rest[1])))
            elif want in (d / "environ").read_bytes().split(b"\0"):
                live.add(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(live | {z for z, parent in zombies if parent in live})


def wait_gone(tag: str, bound_s: float = 3.0, find=tagged) -> list:
    """Leftovers of a run (by its tag, or find(needle)) after a bounded
    wait for the kernel to reap them."""
    end = time.monotonic() + bound_s
    left = find(tag)
    while left and time.monotonic() < end:
        time.sleep(0.02)  # the test harness polls; probes never do this
        left = find(tag)
    return left


def arch_build(name: str = "aarch64") -> Path:
    """build/NAME (the static probes of another architecture), built now
    if this machine has the cross compiler; else the test skips, saying
    what is missing. Asked at run time, not at collection: an earlier test
    of the same run may have built it."""
    import shutil
    import subprocess
    from runner import arch
    d = ROOT / "build" / name
    if not (d / "sp-isolate").exists():
        triple = arch.ARCHES[name][4]
        if shutil.which(triple + "-gcc") is None:
            pytest.skip("%s-gcc is not installed (make check ARCH=%s installs it)" % (triple, name))
        r = subprocess.run(["make", "--no-print-directory", "cross-" + name], cwd=ROOT,
                           capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items()
                                if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")})
        assert r.returncode == 0, r.stdout + r.stderr
    return d
