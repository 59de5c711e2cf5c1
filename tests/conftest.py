"""Shared helpers for the project's own tests."""
import os
import re
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
    # A run started in the background of a non-interactive shell (`make
    # test &` in a script) inherits SIGINT ignored, and so would every
    # process the tests start: the Ctrl-C tests press Ctrl-C as a terminal
    # does, so their processes get SIGINT's default back (an ignored
    # signal stays ignored across exec; a handler does not).
    import signal
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for p in (ISOLATE, MISBEHAVE, FAULTLIB):
        if not p.exists():
            raise pytest.UsageError("%s is not built: run `make test`, which builds first" % p)


# A skip for something a package or a fetched kernel provides: `make
# test-deps` installs and fetches all of them. In CI (SOCKPROBE_CI=1, set
# by .ci/run) such a skip fails the run; everywhere, the run ends with one
# line counting skips and naming the command that runs them
# (build/test-skips, which `make test` prints last).
MISSING = re.compile(r"not installed|is missing|not fetched|not built|installs it|"
                     r"no \S+ is installed|cannot be fetched")
SKIPS = BUILD / "test-skips"


def _skip_reason(rep) -> str:
    lr = rep.longrepr
    text = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
    return text[len("Skipped: "):] if text.startswith("Skipped: ") else text


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not hasattr(rep, "wasxfail") and os.environ.get("SOCKPROBE_CI"):
        reason = _skip_reason(rep)
        if MISSING.search(reason):
            rep.outcome = "failed"
            rep.longrepr = "skipped for something `make test-deps` provides (CI): %s" % reason


def skip_line(reasons: list) -> str:
    """The one line a test run ends with: how many skipped, why, and the
    command that runs them."""
    if not reasons:
        return "make test: no test skipped"
    pkg = sum(1 for r in reasons if MISSING.search(r))
    root = sum(1 for r in reasons if not MISSING.search(r) and "root" in r)
    other = len(reasons) - pkg - root
    parts = []
    if pkg:
        parts.append("%d for a missing package, build or kernel: `make test-deps && make test` "
                     "runs them" % pkg)
    if root:
        parts.append("%d need root: run `make test` as root" % root)
    if other:
        parts.append("%d for this machine (%s)" % (other, "; ".join(sorted(
            {r for r in reasons if not MISSING.search(r) and "root" not in r}))[:200]))
    return "make test: %d test%s skipped: %s (`%s -m pytest -rs tests` lists why)" % (
        len(reasons), "" if len(reasons) == 1 else "s", "; ".join(parts),
        os.path.basename(sys.executable))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if hasattr(config, "workerinput"):
        return
    reasons = [_skip_reason(r) for r in terminalreporter.stats.get("skipped", [])]
    line = skip_line(reasons)
    terminalreporter.write_line(line)
    try:
        SKIPS.write_text(line + "\n")
    except OSError:
        pass


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
