"""Entry points (issue 21): where io_uring is refused, the items that run a
behavior through it say so (the missing path is recorded as `unavailable`
and named in the item's message; an item with no other path skips) and
pass nothing on that path; everything else still passes.

The probes run under build/test-probes/no-io-uring (tests/probes/
no-io-uring.c), a wrapper that installs a seccomp filter failing
io_uring_setup() with ENOSYS or EPERM for the probe alone (as container
runtimes' default profiles do) and execs it: never a machine-wide setting."""
import json
import subprocess
import sys

import pytest

from conftest import BUILD, ROOT

WRAPPER = BUILD / "test-probes" / "no-io-uring"
# Probes whose items run behaviors through the io_uring values of the
# .read/.write axes, and one (entry) whose wait calls do not need io_uring.
PROBES = ["tcp", "udp", "flag", "close", "entry", "unix", "pipe", "thread", "mcast", "cmsg", "mmsg", "zc",
          "opt"]


def run(tmp_path, errno_name):
    r = subprocess.run([sys.executable, "-m", "runner", "check", "-q", "-n", "2", "--reports",
                        str(tmp_path), "--wrap", "%s %s" % (WRAPPER, errno_name)] + PROBES,
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    doc = json.loads((tmp_path / "latest" / "report.json").read_text())
    return r, doc["results"]


def environment_skip(x):
    """A skip that says why and is not about an entry point."""
    return x["verdict"] == "skip" and x["message"] and "io_uring" not in x["message"] \
        and "unavailable" not in x.get("observations", {})


@pytest.mark.parametrize("errno_name", ["ENOSYS", "EPERM"])
def test_refused_io_uring_is_reported_unsupported_and_the_rest_passes(tmp_path, errno_name):
    r, results = run(tmp_path, errno_name)
    others = [(x["item"], x["verdict"], x["message"]) for x in results
              if x["verdict"] not in ("pass", "skip")]
    assert others == [], r.stdout[-3000:]
    lacking = [x for x in results if "unavailable" in x.get("observations", {})]
    assert lacking, "no item runs a behavior through io_uring"
    why = "io_uring: io_uring_setup() fails with %s" % errno_name
    for x in lacking:
        assert x["observations"]["unavailable"].startswith(why), x
        if x["verdict"] == "skip":   # not one path of the behavior left
            assert x["message"] == "not supported by this system: " + \
                x["observations"]["unavailable"], x
        else:                        # the other paths ran and passed
            assert x["message"].startswith("not supported by this system, left out: " + why), x
    # Items with no io_uring path pass as before (or skip for a reason of
    # this machine's own, e.g. no /proc of the item's own in a container).
    assert [(x["item"], x["verdict"], x["message"]) for x in results
            if "unavailable" not in x.get("observations", {}) and
            (x["verdict"] != "pass" and not environment_skip(x))] == [], r.stdout[-3000:]
    # and some item passes at all.
    assert any(x["verdict"] == "pass" for x in results)
    assert r.returncode == 0, r.stdout[-3000:]


def test_without_the_filter_every_io_uring_path_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "runner", "check", "-q", "-n", "2", "--reports",
                        str(tmp_path)] + PROBES, cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    doc = json.loads((tmp_path / "latest" / "report.json").read_text())
    assert [(x["item"], x["verdict"], x["message"]) for x in doc["results"]
            if x["verdict"] != "pass" and not environment_skip(x)] == [], r.stdout[-3000:]
