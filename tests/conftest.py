"""Shared helpers for the project's own tests."""
import os
import sys
import time
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


def processes_running(needle: str, zombie_names=()) -> list:
    """Pids of processes whose command line mentions needle, and zombies
    (which have no command line) whose name is one of zombie_names."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            stat = (d / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        state = stat[stat.rindex(")") + 2:].split()[0]
        if needle in cmd or (state == "Z" and comm in zombie_names):
            found.append(int(d.name))
    return found


PROBE_NAMES = ("tcp", "udp", "close", "proc", "sig", "pipe", "dns", "misbehave", "sp-isolate", "dnsmasq")


def wait_gone(needle: str, bound_s: float = 3.0) -> list:
    """Leftover processes (or zombies) after a bounded wait for the kernel
    to reap them."""
    end = time.monotonic() + bound_s
    left = processes_running(needle, PROBE_NAMES)
    while left and time.monotonic() < end:
        time.sleep(0.02)  # the test harness polls; probes never do this
        left = processes_running(needle, PROBE_NAMES)
    return left
