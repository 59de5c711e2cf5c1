"""The bundle that runs anywhere: `make dist`, its POSIX sh runner under
dash and busybox sh, and `ingest` giving the verdicts a host run of the
same binaries gives; the runner's framing of timeouts, crashes and a run
stopped half-way."""
import json
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from conftest import ROOT, processes_running
from runner import dist, protocol, rootfs

STATIC = ROOT / "build" / "static"
PY = sys.executable
# A small selection: every udp item (both families) and two without one.
SELECTION = ["udp", "proc/fork_returns_child_pid_in_parent_and_zero_in_child",
             "proc/fork_child_memory_is_a_copy"]
SHELLS = [["/bin/sh"], ["busybox", "sh"]]

needs_static = pytest.mark.skipif(not (STATIC / "sp-isolate").exists(),
                                  reason="the static probes are not built (make static)")


def verdicts(report_dir: Path) -> dict:
    doc = json.loads((report_dir / "latest" / "report.json").read_text())
    return {r["item"]: r["verdict"] for r in doc["results"]}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """`make dist`, unpacked into a temporary directory."""
    if not (STATIC / "sp-isolate").exists():
        pytest.skip("the static probes are not built (make static)")
    r = subprocess.run(["make", "--no-print-directory", "dist"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    tgz = Path(r.stdout.split("written: ")[1].split()[0])
    assert tgz.name.startswith("sockprobe-") and tgz.name.endswith("-x86_64.tar.gz")
    d = tmp_path_factory.mktemp("bundle")
    with tarfile.open(tgz) as t:
        names = t.getnames()
        t.extractall(d)
    top = d / tgz.name[:-len(".tar.gz")]
    assert {"run", "sp-isolate", "README"} <= {p.name for p in top.iterdir()}
    assert (top / "fixtures" / "dns" / "hosts").is_file()
    assert sorted(p.name for p in (top / "probes").iterdir()) == \
        sorted(p.name for p in (STATIC / "probes").iterdir())
    assert all(n.startswith(top.name + "/") for n in names)
    return top


@pytest.fixture(scope="module")
def host_verdicts(tmp_path_factory):
    """A host run of the same cases (the bundle holds their static glibc
    build): the same verdicts, item for item."""
    rep = tmp_path_factory.mktemp("host-reports")
    r = subprocess.run([PY, "-m", "runner", "check", "-q", "--reports", str(rep)]
                       + SELECTION, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    return verdicts(rep)


@needs_static
@pytest.mark.parametrize("shell", SHELLS, ids=["sh", "busybox-sh"])
def test_bundle_round_trips_to_the_host_verdicts(bundle, host_verdicts, shell, tmp_path):
    if shutil.which(shell[0]) is None:
        pytest.skip("%s is not installed" % shell[0])
    stream = tmp_path / "stream"
    # No Python and no compiler on the way: a bare PATH, a shell, the bundle.
    r = subprocess.run(shell + [str(bundle / "run"), "-o", str(stream)] + SELECTION,
                       cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = stream.read_text()
    assert text.startswith("@SP1 guest kernel=") and text.rstrip().endswith("@SP1 guest-done")
    rep = tmp_path / "reports"
    r = subprocess.run([PY, "-m", "runner", "ingest", str(stream), "--reports", str(rep)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    got = verdicts(rep)
    assert got == host_verdicts
    assert len(got) == 22
    doc = json.loads((rep / "latest" / "report.json").read_text())
    assert doc["partial"] is False
    assert doc["environment"]["target"] == "bundle"
    assert doc["environment"]["bundle"] == bundle.name
    assert doc["environment"]["libc"] == "glibc"
    assert doc["environment"]["item_isolation"] == ["namespaces"]


@needs_static
@pytest.mark.skipif(shutil.which("prove") is None, reason="perl's prove is not installed")
def test_bundle_prints_ktap_on_the_console_for_lava(bundle, tmp_path):
    """run -K: KTAP on stdout as the items end (what LAVA or KernelCI read
    off a device's console), the stream still in its file: prove reads it
    without a parse error, and every item is ok exactly where the report
    of that stream says pass or skip."""
    stream = tmp_path / "stream"
    r = subprocess.run(["sh", str(bundle / "run"), "-K", "-o", str(stream)] + SELECTION,
                       cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rep = tmp_path / "reports"
    subprocess.run([PY, "-m", "runner", "ingest", str(stream), "--reports", str(rep)],
                   cwd=ROOT, capture_output=True, text=True)
    got = verdicts(rep)
    ktap = r.stdout
    items = dict((m.group(2), m.group(1)) for m in
                 re.finditer(r"^  (ok|not ok) \d+ (\S+)", ktap, re.M))
    assert items == {i: "ok" if v in ("pass", "skip") else "not ok" for i, v in got.items()}
    assert ktap.startswith("KTAP version 1\n") and "\n1..2\n" in ktap   # udp, proc
    (tmp_path / "k.tap").write_text(ktap)
    p = subprocess.run(["prove", "--exec", "cat", str(tmp_path / "k.tap")],
                       capture_output=True, text=True)
    assert "Parse errors" not in p.stdout + p.stderr, p.stdout
    assert (p.returncode == 0) == all(v == "ok" for v in items.values()), p.stdout


@needs_static
def test_ktap_on_the_console_says_each_way_an_item_ends(tmp_path):
    b = fake_bundle(tmp_path)
    r = subprocess.run(["dash", str(b / "run"), "-t", "1", "-K", "-o", str(tmp_path / "s")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[2:] == [
        "1..1", "  KTAP version 1", "  # Subtest: fake", "  1..5",
        "  ok 1 fake/ok[ipv4]", "  ok 2 fake/ok[ipv6]",
        "  # f.c:1", "  # f.c:1: x: expected 1, observed 2", "  not ok 3 fake/bad",
        "  # probe ended with status 139 (signal 11)", "  not ok 4 fake/crash # ERROR",
        "  not ok 5 fake/hang # TIMEOUT", "not ok 1 fake"]
    # The stream is the same as without -K.
    assert (tmp_path / "s").read_text().count("@SP1 exit status=") == 5
    r = subprocess.run(["dash", str(b / "run"), "-K"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "-K prints KTAP on stdout" in r.stderr


def test_make_ingest_without_a_stream_says_so():
    r = subprocess.run(["make", "--no-print-directory", "ingest"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "STREAM=FILE" in r.stderr


def test_ingest_of_something_else_is_one_clear_line(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello\n")
    for arg in (str(f), str(tmp_path / "missing")):
        r = subprocess.run([PY, "-m", "runner", "ingest", arg, "--reports", str(tmp_path / "r")],
                           cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()
    stream = tmp_path / "stream"
    stream.write_text("@SP1 guest kernel=x timeout=5\n@SP1 item probe=p test=t family=none ids=X\n")
    r = subprocess.run([PY, "-m", "runner", "ingest", str(stream), "--reports", "/proc/no/such"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "the report directory /proc/no/such" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ---- the runner's framing, with a fake probe ---------------------------------

FAKE = r"""#!/bin/sh
case "$1" in
--env) echo "@SP1 env key=libc value=fake" ;;
--list)
	echo "@SP1 test probe=fake name=ok ids=SELF families=ipv4,ipv6"
	echo "@SP1 test probe=fake name=bad ids=SELF families=none"
	echo "@SP1 test probe=fake name=crash ids=SELF families=none"
	echo "@SP1 test probe=fake name=hang ids=SELF families=none" ;;
--run)
	echo "@SP1 begin probe=fake test=$2 family=$4 ids=SELF"
	case "$2" in
	ok) echo "@SP1 end verdict=pass message=" ;;
	bad) echo "@SP1 fail at=f.c:1 expr=x expected=1 observed=2 errno= child="
	     echo "@SP1 end verdict=fail message=f.c:1"; exit 1 ;;
	crash) kill -SEGV $$ ;;
	hang) echo started >"$SOCKPROBE_FIXTURES/../hang-started"; exec sleep 3171 ;;
	esac ;;
esac
"""


def fake_bundle(tmp_path) -> Path:
    b = tmp_path / "b"
    (b / "probes").mkdir(parents=True)
    (b / "fixtures").mkdir()
    shutil.copy2(rootfs.RUN, b / "run")
    shutil.copy2(STATIC / "sp-isolate", b / "sp-isolate")
    (b / "probes" / "fake").write_text(FAKE)
    (b / "probes" / "fake").chmod(0o755)
    return b


@needs_static
def test_runner_frames_pass_fail_crash_and_timeout(tmp_path):
    b = fake_bundle(tmp_path)
    out = subprocess.run(["dash", str(b / "run"), "-t", "1"], capture_output=True, text=True,
                         timeout=60).stdout
    p = protocol.parse_framed(out, dist.header_timeout(out), dist.CUT_SHORT)
    assert p["done"]
    assert [(r["item"], r["verdict"]) for r in p["results"]] == [
        ("fake/ok[ipv4]", "pass"), ("fake/ok[ipv6]", "pass"), ("fake/bad", "fail"),
        ("fake/crash", "error"), ("fake/hang", "timeout")]
    r = {x["item"]: x for x in p["results"]}
    assert r["fake/crash"]["message"] == "probe killed by SIGSEGV"
    assert r["fake/bad"]["failures"][0]["observed"] == "2"
    # -f, and a selection of one test
    out = subprocess.run(["dash", str(b / "run"), "-f", "ipv6", "fake/ok"], capture_output=True,
                         text=True, timeout=60).stdout
    assert [l for l in out.splitlines() if " item " in l] == \
        ["@SP1 item probe=fake test=ok family=ipv6 ids=SELF"]


@needs_static
@pytest.mark.parametrize("bad", [["-t", "0"], ["-t", "x"], ["-f", "ipx"], ["-q"]])
def test_runner_usage_errors(tmp_path, bad):
    b = fake_bundle(tmp_path)
    r = subprocess.run(["dash", str(b / "run")] + bad, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("sockprobe-run: ")
    assert r.stdout == ""


@needs_static
def test_runner_stopped_mid_item_cleans_up_and_ingests_partial(tmp_path):
    b = fake_bundle(tmp_path)
    stream = tmp_path / "stream"
    p = subprocess.Popen(["dash", str(b / "run"), "-t", "60", "-r", str(b), "-o", str(stream)],
                         stderr=subprocess.PIPE)
    end = time.monotonic() + 30
    while not (b / "hang-started").exists():
        assert time.monotonic() < end and p.poll() is None
        time.sleep(0.05)  # waiting for another process to reach a point
    assert processes_running("sleep 3171")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == 143
    assert not b.exists()          # -r: the bundle directory is gone
    end = time.monotonic() + 5     # the item's namespace dies with sp-isolate
    while processes_running("sleep 3171") and time.monotonic() < end:
        time.sleep(0.05)
    assert not processes_running("sleep 3171")
    rep = tmp_path / "r"
    r = subprocess.run([PY, "-m", "runner", "ingest", str(stream), "--reports", str(rep)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1
    assert "partial report" in r.stdout
    doc = json.loads((rep / "latest" / "report.json").read_text())
    assert doc["partial"] is True
    res = {x["item"]: x for x in doc["results"]}
    assert res["fake/ok[ipv4]"]["verdict"] == "pass"
    assert res["fake/hang"]["verdict"] == "error"
    assert res["fake/hang"]["message"] == dist.CUT_SHORT


@needs_static
def test_runner_says_when_a_probe_cannot_run_here(tmp_path):
    b = fake_bundle(tmp_path)
    alien = b / "probes" / "alien"   # another architecture's binary, as far as exec goes
    alien.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 57)
    alien.chmod(0o755)
    r = subprocess.run(["dash", str(b / "run"), "alien"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "alien cannot run here" in r.stderr and "another architecture" in r.stderr
    r = subprocess.run(["dash", str(b / "run"), "nosuch/x"], capture_output=True, text=True)
    assert r.returncode == 2 and "no probe 'nosuch'" in r.stderr and r.stdout == ""
    r = subprocess.run(["dash", str(b / "run"), "fake/nosuch"], capture_output=True, text=True)
    assert r.returncode == 2 and "no test 'nosuch' in probes/fake" in r.stderr and r.stdout == ""


def test_a_bundle_for_another_architecture(tmp_path):
    """make dist ARCH=aarch64: that architecture's probes and sp-isolate,
    named after it; the runner script is the same."""
    from conftest import arch_build
    arch_build("aarch64")
    r = subprocess.run([PY, "-m", "runner", "dist", "--static", str(ROOT / "build" / "aarch64"),
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (tar,) = tmp_path.glob("sockprobe-*.tar.gz")
    assert tar.name.endswith("-aarch64.tar.gz")
    with tarfile.open(tar) as t:
        t.extractall(tmp_path / "x")
    (top,) = (tmp_path / "x").iterdir()
    assert {dist.arch_of(p) for p in [top / "sp-isolate", *(top / "probes").iterdir()]} == {"aarch64"}
    assert (top / "run").read_text() == rootfs.RUN.read_text()
