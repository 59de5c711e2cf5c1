"""The exit-status contract, through make as users run it (README, "Set-up
and use"): 0 every Must holds, 1 a Must failed (or an item broke, crashed
or timed out), 2 a usage or set-up error. Make variables are checked before
anything is installed or built; the missing-package hint names a way this
system has."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import FAULTLIB, ROOT
from runner import discover, faults

ITEM = "tcp/tcp_connect_binds_ephemeral_port"


def make(*args, env=None):
    """`make ARGS` in the checkout, as a user types it: no make state of
    the make that runs these tests leaks in."""
    e = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    e.update(env or {})
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=300)


def test_make_check_exits_0_when_every_must_holds(tmp_path):
    r = make("check", "TESTS=" + ITEM, "REPORT_DIR=%s" % tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def _failing_fault():
    """A fault and one item it must make fail."""
    items = discover.all_items()
    for f in faults.table():
        if f.equivalent:
            continue
        for i in items:
            if set(f.ids) & set(i.ids) and i.family in ("ipv4", "none"):
                return f.name, i
    pytest.skip("no fault in the table")


def test_make_check_exits_1_when_a_must_fails(tmp_path):
    fault, item = _failing_fault()
    r = make("check", "TESTS=" + item.name, "PRELOAD=%s" % FAULTLIB,
             "REPORT_DIR=%s" % tmp_path, env={"SOCKPROBE_FAULT": fault})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "make: ***" not in r.stderr  # make adds no error of its own


def test_make_check_exits_2_on_a_usage_error(tmp_path):
    r = make("check", "TESTS=nosuchprobe", "REPORT_DIR=%s" % tmp_path)
    assert r.returncode == 2
    assert "unknown probe 'nosuchprobe'" in r.stderr


@pytest.mark.parametrize("var", ["KERNEL=bogus", "LIBC=uclibc", "FAMILY=ipv5", "JOBS=none",
                                 "TIMEOUT=0", "REPEAT=0", "PRELOAD=relative.so"])
def test_a_bad_make_variable_is_one_line_before_anything_runs(var):
    r = make("check", var)
    assert r.returncode == 2
    assert r.stdout == ""  # nothing installed, built or run
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and var.split("=")[0] in lines[0] and "Traceback" not in r.stderr


def test_family_with_a_probe_selection_runs_that_family(tmp_path):
    r = make("check", "TESTS=udp", "FAMILY=ipv6", "REPORT_DIR=%s" % tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    import json
    doc = json.loads((tmp_path / "latest" / "report.json").read_text())
    assert doc["results"] and {r["family"] for r in doc["results"]} <= {"ipv6", None}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the check as another user")
def test_missing_package_hint_names_a_way_this_system_has():
    d = Path(tempfile.mkdtemp(prefix="sp-deps-"))
    try:
        d.chmod(0o755)
        shutil.copy(ROOT / "scripts" / "deps.sh", d / "deps.sh")
        (d / "deps.sh").chmod(0o755)

        def nobody():
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
        r = subprocess.run([str(d / "deps.sh"), "sockprobe-no-such-package"], cwd=str(d),
                           capture_output=True, text=True, preexec_fn=nobody,
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert r.returncode == 2
    assert "apt-get install -y sockprobe-no-such-package" in r.stderr
    assert ("sudo " in r.stderr) == bool(shutil.which("sudo")), r.stderr
