"""Guest kernels: the stream a guest's init writes, a panicking, hung or
silent kernel (a dead KVM), the guest root image, progress, and real UML
and QEMU guests stopped with Ctrl-C and SIGTERM, alone and inside
`make check-kernels`."""
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, new_tag, processes_running, wait_gone
from runner import health, kernels, proc, progress, protocol, rootfs
from runner.proc import session_members
from runner.targets import qemu, stream, uml

STREAM = """\
[    0.51] random kernel noise
@SP1 guest kernel=6.1.0-test timeout=10
@SP1 env key=kernel value=6.1.0-test
@SP1 env key=libc value=musl
@SP1 item probe=tcp test=a family=ipv4 ids=TCP-BOUNDARY-COALESCE
@SP1 isolation mode=namespaces reason=user+net+pid+mount
@SP1 begin probe=tcp test=a family=ipv4 ids=TCP-BOUNDARY-COALESCE
[ RUN      ] a
@SP1 obs key=read_sizes value=40
@SP1 end verdict=pass message=
@SP1 exit status=0
@SP1 item probe=tcp test=b family=ipv6 ids=TCP-BOUNDARY-SPLIT
@SP1 begin probe=tcp test=b family=ipv6 ids=TCP-BOUNDARY-SPLIT
@SP1 fail at=tcp.c:9 expr=n expected=100 observed=10 errno= child=
@SP1 end verdict=fail message=tcp.c:9:%20n
@SP1 exit status=1
@SP1 item probe=proc test=c family=none ids=PROC-ZOMBIE
@SP1 begin probe=proc test=c family=none ids=PROC-ZOMBIE
@SP1 exit status=139
@SP1 item probe=proc test=d family=none ids=PROC-WAIT-BLOCKS
@SP1 begin probe=proc test=d family=none ids=PROC-WAIT-BLOCKS
@SP1 exit status=143
@SP1 item probe=pipe test=e family=none ids=PIPE-ENDS
@SP1 begin probe=pipe test=e family=none ids=PIPE-ENDS
"""


def test_guest_stream_gives_the_same_verdicts_as_a_host_run():
    p = protocol.parse_framed(STREAM, 10)
    assert p["kernel"] == "6.1.0-test" and p["env"]["libc"] == "musl"
    got = [(r["item"], r["verdict"]) for r in p["results"]]
    assert got == [("tcp/a[ipv4]", "pass"), ("tcp/b[ipv6]", "fail"), ("proc/c", "error"),
                   ("proc/d", "timeout"), ("pipe/e", "error")]
    r = {x["item"]: x for x in p["results"]}
    assert r["tcp/a[ipv4]"]["observations"] == {"read_sizes": "40"}
    assert r["tcp/a[ipv4]"]["isolation"] == "namespaces"
    assert r["tcp/b[ipv6]"]["failures"][0]["expected"] == "100"
    assert r["proc/c"]["message"] == "probe killed by SIGSEGV"
    assert "guest stopped during this item" in r["pipe/e"]["message"]
    assert p["done"] is False


def test_finished_stream_is_done():
    p = protocol.parse_framed("@SP1 guest kernel=x\n@SP1 guest-done\n", 10)
    assert p["done"] and p["results"] == []


def fake_vm(tmp_path, body):
    vm = tmp_path / "vm.sh"
    vm.write_text("#!/bin/sh\n" + body)
    vm.chmod(vm.stat().st_mode | stat.S_IEXEC)
    return [str(vm)]


def test_a_panicking_kernel_is_reported_at_once(tmp_path):
    console = tmp_path / "console.log"
    start = time.monotonic()
    how = proc.run_bounded(fake_vm(tmp_path, "echo 'Kernel panic - not syncing: VFS'; "
                                     "exec sleep 300\n"), console, 60)
    assert how == "panicked" and time.monotonic() - start < 10
    assert "panicked: Kernel panic - not syncing: VFS" in stream.describe_failure(how, console)
    assert wait_gone(str(tmp_path / "vm.sh"), find=processes_running) == []


def test_a_hung_kernel_ends_at_the_bound(tmp_path):
    console = tmp_path / "console.log"
    how = proc.run_bounded(fake_vm(tmp_path, "echo booting; exec sleep 300\n"), console, 1)
    assert how == "hung"
    assert "did not finish within the bound" in stream.describe_failure(how, console)
    assert wait_gone(str(tmp_path / "vm.sh"), find=processes_running) == []


@pytest.mark.skipif(not kernels.UML.exists(), reason="user-mode-linux is not installed")
def test_a_real_kernel_panic_is_caught(tmp_path):
    """User-mode Linux with no init to run panics; we see it and end it."""
    console = tmp_path / "console.log"
    umltmp = tmp_path / "t"
    umltmp.mkdir()
    cmd = [str(kernels.UML), "mem=64M", "rootfstype=hostfs", "rootflags=%s" % tmp_path,
           "init=/no-such-init", "con=null", "con0=null,fd:1", "ssl=null"]
    how = proc.run_bounded(cmd, console, 60, env=dict(os.environ, TMPDIR=str(umltmp)))
    assert how == "panicked"
    assert wait_gone("rootflags=%s" % tmp_path, find=processes_running) == []


STATIC = ROOT / "build" / "static"


@pytest.mark.skipif(not (STATIC / "sp-isolate").exists() or not rootfs.BUSYBOX.exists(),
                    reason="static probes or busybox-static not built/installed")
def test_guest_root_and_initramfs(tmp_path):
    root = rootfs.build_root(tmp_path / "root", STATIC)
    assert (root / "init").stat().st_mode & stat.S_IXUSR
    assert (root / "bin" / "busybox").exists() and os.readlink(root / "bin" / "sh") == "busybox"
    assert sorted(p.name for p in (root / "probes").iterdir()) == sorted(
        p.stem for p in (ROOT / "cases").glob("*.c"))
    cpio = rootfs.write_cpio(root, tmp_path / "initrd.cpio")
    data = cpio.read_bytes()
    assert data.startswith(b"070701") and b"TRAILER!!!" in data and b"probes/tcp" in data
    if shutil.which("cpio"):
        import subprocess
        out = subprocess.run(["cpio", "-t"], input=data, capture_output=True).stdout.decode()
        assert "init" in out.split() and "probes/tcp" in out.split()


def test_a_silent_kernel_ends_at_the_boot_bound(tmp_path):
    console = tmp_path / "console.log"
    how = proc.run_bounded(fake_vm(tmp_path, "exec sleep 300\n"), tmp_path / "vm.log", 60,
                             guest_console=console, stream=tmp_path / "stream", boot_bound_s=0.5)
    assert how == "silent"
    assert "printed nothing within 0.5 s" in stream.describe_failure(how, console, 0.5)
    assert wait_gone(str(tmp_path / "vm.sh"), find=processes_running) == []


needs_static = pytest.mark.skipif(not (STATIC / "sp-isolate").exists() or not rootfs.BUSYBOX.exists(),
                                  reason="static probes or busybox-static not built/installed")

# A stand-in for qemu-system-x86_64: under KVM it prints nothing and never
# ends (what this machine's /dev/kvm does); under TCG it writes a finished
# stream to the second serial port and powers off.
FAKE_QEMU = """#!/bin/sh
case " $* " in *" -accel kvm "*) exec sleep 300 ;; esac
n=0
for a in "$@"; do
    case $a in file:*) n=$((n+1)); [ $n = 2 ] && out=${a#file:} ;; esac
done
printf '@SP1 guest kernel=fake\\n@SP1 guest-done\\n' > "$out"
"""


@needs_static
def test_a_kvm_that_prints_nothing_is_abandoned_for_tcg_once(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "qemu-system-x86_64").write_text(FAKE_QEMU)
    (bindir / "qemu-system-x86_64").chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ["PATH"]))
    monkeypatch.setattr(qemu, "KVM_CACHE", tmp_path / "kvm.json")
    monkeypatch.setattr(qemu, "KVM_BOOT_S", 0.5)
    monkeypatch.setattr(qemu, "kvm_usable", lambda: True)
    image = tmp_path / "bzImage"
    image.write_bytes(b"")
    said = []
    t = qemu.Qemu(image=image)
    t.prepare(said.append)
    assert t.describe() == "booting qemu %s (bzImage, KVM)" % image
    how = t.start(STATIC, tmp_path / "work", ["close"], 5, 60, None, said.append)
    assert how == "exited" and t.accel == "TCG"
    assert len(said) == 1 and said[0].startswith("sockprobe: KVM printed nothing within 0.5 s: "
                                                 "abandoned for TCG")
    assert protocol.parse_framed(t.stream_path.read_text(), 5)["done"]
    assert json.loads((tmp_path / "kvm.json").read_text())["kvm"] == "dead"
    # The verdict holds for this boot of the machine: the next run goes
    # straight to TCG and says why in its one booting line.
    again = qemu.Qemu(image=image)
    again.prepare(said.append)
    assert again.accel == "TCG" and len(said) == 1
    assert "TCG: KVM printed nothing earlier on this boot" in again.describe()
    assert wait_gone(str(bindir), find=processes_running) == []


def test_messages_name_an_accelerator_only_where_one_is_used():
    assert uml.Uml().describe() == "booting uml"


def test_the_guest_bound_is_the_boot_bound_plus_every_item_timing_out():
    assert stream.default_bound(uml.Uml(), 10, 5) == uml.Uml.boot_bound_s + 50


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def test_progress_is_quiet_for_short_work_and_says_how_long_is_left():
    out, clock = io.StringIO(), Clock()
    p = progress.Progress("uml", 100, out=out, clock=clock)
    for i in range(1, 40):
        clock.t = i * 0.2
        p.update(i, "running items")
    assert out.getvalue() == ""  # a run this short says nothing
    clock.t = 20
    p.update(50, "running items")
    assert out.getvalue() == "uml: running items, 50/100, 20 s so far, about 20 s left\n"
    clock.t = 21
    p.update(55)
    assert out.getvalue().count("\n") == 1  # not a line per update


# ---- real guests, stopped -------------------------------------------------

KERNEL_61 = sorted(kernels.CACHE.glob("linux-image-6.1.*/boot/vmlinuz-*"))


def _vm_session(needle: str, bound_s: float = 60) -> int:
    """The session of the VM whose command line holds needle."""
    end = time.monotonic() + bound_s
    while time.monotonic() < end:
        pids = processes_running(needle)
        for pid in pids:
            try:
                st = Path("/proc/%d/stat" % pid).read_text()
                return int(st[st.rindex(")") + 2:].split()[3])
            except (OSError, ValueError):
                continue
        time.sleep(0.05)  # the test harness polls
    raise AssertionError("no VM started (%s)" % needle)


def _wait_items(stream: Path, n: int, bound_s: float = 90) -> None:
    end = time.monotonic() + bound_s
    while time.monotonic() < end:
        try:
            if stream.read_text(errors="replace").count("@SP1 exit ") >= n:
                return
        except OSError:
            pass
        time.sleep(0.05)  # the test harness polls
    raise AssertionError("the guest ran fewer than %d items within %g s" % (n, bound_s))


def _stop_mid_run(tmp_path, argv, kind, needle, sig, whole_group):
    """Start argv, wait until its guest has finished two items, stop it
    with sig (to the whole group, as a terminal's Ctrl-C does, or to the
    first process alone, as a service manager or CI does); return its
    output, exit status and the guest's session."""
    work = "qemu-6.1" if kind == "qemu" else kind  # a directory per target
    stream = ROOT / "build" / "guest" / work / "stream"
    stream.unlink(missing_ok=True)  # not a previous run's
    tag = new_tag()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True,
                            env=dict({k: v for k, v in os.environ.items()  # not make test's -q
                                      if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},
                                     SOCKPROBE_TEST_TAG=tag))
    try:
        sid = _vm_session(needle)
        _wait_items(stream, 2)
        if whole_group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        out = proc.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # Nothing left: not the VM or anything it started (UML runs the
    # guest's processes as host processes), not the runner, not make.
    assert wait_gone(sid, find=session_members) == [], out
    assert wait_gone(proc.pid, find=session_members) == [], out
    assert wait_gone(tag) == [], out
    return out, proc.returncode


def _partial_report(reports: Path, selection_items: int) -> dict:
    doc = json.loads((reports / "latest" / "report.json").read_text())
    assert doc["partial"] is True
    assert 2 <= len(doc["results"]) < selection_items  # stopped mid-run, finished items kept
    assert {r["verdict"] for r in doc["results"]} <= {"pass", "skip"}
    return doc


SELECTION = ["tcp", "udp"]


def _selection_items():
    return stream.count_items(STATIC, SELECTION)


@needs_static
@pytest.mark.skipif(not kernels.UML.exists(), reason="user-mode-linux is not installed")
@pytest.mark.parametrize("sig,whole_group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c", "sigterm"])
def test_make_check_uml_stops_at_once_and_writes_a_partial_report(tmp_path, sig, whole_group):
    argv = ["make", "--no-print-directory", "check", "KERNEL=uml", "TESTS=" + " ".join(SELECTION),
            "REPORT_DIR=%s" % tmp_path]
    out, rc = _stop_mid_run(tmp_path, argv, "uml", "rootflags=%s" % (ROOT / "build/guest/uml/root"),
                            sig, whole_group)
    assert rc != 0
    assert "sockprobe: interrupted by %s: the guest was stopped; partial report written"\
        % sig.name in out, out
    doc = _partial_report(tmp_path, _selection_items())
    assert doc["environment"]["guest"] == "uml"


@needs_static
@pytest.mark.skipif(not shutil.which("qemu-system-x86_64") or not KERNEL_61,
                    reason="qemu-system-x86 or the cached 6.1 kernel is missing")
def test_a_qemu_guest_stops_at_once_on_ctrl_c_and_writes_a_partial_report(tmp_path):
    """(SIGTERM takes the same path: it is tested with UML and make check-kernels.)"""
    sig, whole_group = signal.SIGINT, True
    argv = [sys.executable, "-m", "runner", "check", "--kernel", "6.1", "--reports", str(tmp_path)]
    out, rc = _stop_mid_run(tmp_path, argv + SELECTION, "qemu",
                            str(ROOT / "build/guest/qemu-6.1"),
                            sig, whole_group)
    assert rc == 128 + sig, out
    doc = _partial_report(tmp_path, _selection_items())
    assert doc["environment"]["guest"] == "qemu 6.1"
    assert doc["environment"]["guest_accel"] in ("kvm", "tcg")


@needs_static
@pytest.mark.skipif(not kernels.UML.exists() or not shutil.which("qemu-system-x86_64"),
                    reason="user-mode-linux or qemu-system-x86 is not installed")
@pytest.mark.parametrize("sig,whole_group", [(signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["sigterm", "ctrl-c"])
def test_make_check_kernels_stopped_with_sigterm_leaves_nothing(tmp_path, sig, whole_group):
    """SIGTERM to make (what CI and `timeout` send) while UML runs: make
    passes it to the matrix, the matrix to every running step (they run
    side by side), each stops its guest and writes its partial report; no
    step starts after it, no comparison is made, nothing is left."""
    reports = ROOT / "reports"
    before = set(reports.iterdir()) if reports.exists() else set()
    # JOBS=4: every step starts at once, UML among them, whatever the last times were.
    out, rc = _stop_mid_run(tmp_path, ["make", "--no-print-directory", "check-kernels", "JOBS=4"],
                            "uml",
                            "rootflags=%s" % (ROOT / "build/guest/uml/root"),
                            sig, whole_group)
    assert rc != 0
    assert "[2/4] uml: started" in out and "comparison page" not in out, out
    new = [d for d in set(reports.iterdir()) - before if (d / "report.json").exists()]
    docs = [json.loads((d / "report.json").read_text()) for d in new]
    partial = [d["environment"].get("guest") or "host" for d in docs if d["partial"]]
    assert "uml" in partial and set(partial) <= {"host", "uml", "qemu 6.1", "qemu 6.12"}, out
    started = {l.split(":")[0].split("] ")[1] for l in out.splitlines() if l.endswith(": started")}
    assert set(partial) <= started, out


@needs_static
@pytest.mark.skipif(not kernels.UML.exists(), reason="user-mode-linux is not installed")
def test_a_guest_runs_every_item_each_probe_lists(tmp_path):
    """The guest's init takes its items from each probe's --list, every
    family it names (none, ipv4, ipv6): a new case file runs in guests with
    no change to the guest code. One probe with all three keeps it quick."""
    probes = ["proc"]
    r = subprocess.run([sys.executable, "-m", "runner", "check", "--kernel", "uml",
                        "--reports", str(tmp_path)] + probes, cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    doc = json.loads((tmp_path / "latest" / "report.json").read_text())
    from runner import discover
    want = sorted(i.name for p in probes for i in discover.items_of(STATIC / "probes" / p))
    assert sorted(x["item"] for x in doc["results"]) == want
    assert {x["family"] or "none" for x in doc["results"]} == {"none", "ipv4", "ipv6"}
    assert not doc["partial"]


@needs_static
@pytest.mark.parametrize("kind", ["uml", "qemu"])
def test_a_runner_killed_outright_takes_its_guest_along(tmp_path, kind):
    """SIGKILL cannot be caught: the VM dies with the runner (PR_SET_PDEATHSIG),
    and UML's guest processes with it (its own PID namespace, as root)."""
    if kind == "uml" and not kernels.UML.exists():
        pytest.skip("user-mode-linux is not installed")
    if kind == "uml" and os.geteuid() != 0:
        pytest.skip("UML gets a PID namespace of its own only as root")
    if kind == "qemu" and (not shutil.which("qemu-system-x86_64") or not KERNEL_61):
        pytest.skip("qemu-system-x86 or the cached 6.1 kernel is missing")
    argv = [sys.executable, "-m", "runner", "check", "--kernel", "uml" if kind == "uml" else "6.1",
            "--reports", str(tmp_path)] + SELECTION
    needle = ("rootflags=%s" % (ROOT / "build/guest/uml/root") if kind == "uml"
              else str(ROOT / "build/guest/qemu-6.1"))
    _stop_mid_run(tmp_path, argv, kind, needle, signal.SIGKILL, False)


@pytest.mark.skipif(not (STATIC / "sp-isolate").exists() or not rootfs.DNSMASQ.exists(),
                    reason="static probes or dnsmasq-base not built/installed")
def test_the_guest_root_carries_the_dns_fixture_server(tmp_path):
    """dnsmasq with every library ldd names and the loader, at the host's
    paths; the DNS fixtures where sp_fixture() looks from /probes; files
    in /etc for the items to bind-mount over."""
    root = rootfs.build_root(tmp_path / "root", STATIC)
    assert (root / "usr/sbin/dnsmasq").stat().st_mode & stat.S_IXUSR
    libs = rootfs.shared_libraries(rootfs.DNSMASQ)
    assert any("ld-linux" in str(l) for l in libs) and any("libc.so" in str(l) for l in libs)
    for lib in libs:
        copied = root / str(lib).lstrip("/")
        assert copied.is_file() and not copied.is_symlink(), lib
    for f in ("hosts", "resolv.conf", "zone.conf", "nsswitch.conf"):
        assert (root / "fixtures/dns" / f).read_text() == (ROOT / "fixtures/dns" / f).read_text()
    for f in ("hosts", "resolv.conf", "nsswitch.conf", "passwd"):
        assert (root / "etc" / f).is_file()
    assert "root:x:0:0:" in (root / "etc/passwd").read_text()




@needs_static
@pytest.mark.skipif(not kernels.UML.exists() or not rootfs.DNSMASQ.exists(),
                    reason="user-mode-linux or dnsmasq-base is not installed")
def test_dns_items_run_in_a_guest_against_the_fixture_server(tmp_path):
    r = subprocess.run([sys.executable, "-m", "runner", "check", "--kernel", "uml",
                        "--reports", str(tmp_path), "dns"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    doc = json.loads((tmp_path / "latest" / "report.json").read_text())
    verdicts = {x["item"]: x["verdict"] for x in doc["results"]}
    # The static glibc probes: the host's resolver, every DNS item passes.
    assert len(verdicts) >= 7 and verdicts == {i: "pass" for i in verdicts}, r.stdout
    assert doc["environment"]["libc"] == "glibc"
    # A guest run's results.ktap, through Perl's prove: one test per ID.
    if shutil.which("prove"):
        from test_ktap import tap_counts
        c = tap_counts((tmp_path / "latest" / "results.ktap").read_text(), tmp_path, "g.ktap")
        ids = {i for x in doc["results"] for i in x["ids"]}
        assert (c["rc"], c["tests"], c["failed"]) == (0, len(ids), 0)


# ---- kernel health -------------------------------------------------------------

HEALTH_STREAM = """\
@SP1 guest kernel=6.1.0-test timeout=10
@SP1 health when=before taint=4096
@SP1 item probe=tcp test=a family=ipv4 ids=TCP-BOUNDARY-COALESCE
@SP1 begin probe=tcp test=a family=ipv4 ids=TCP-BOUNDARY-COALESCE
@SP1 end verdict=pass message=
@SP1 exit status=0
@SP1 item probe=tcp test=b family=ipv6 ids=TCP-BOUNDARY-SPLIT
@SP1 begin probe=tcp test=b family=ipv6 ids=TCP-BOUNDARY-SPLIT
[   12.345678] console noise inside an item
@SP1 end verdict=pass message=
@SP1 exit status=0
@SP1 health when=item taint=4608
@SP1 klog line=[%20%2012.3]%20------------[%20cut%20here%20]------------
@SP1 klog line=[%20%2012.3]%20WARNING:%20CPU:%200%20PID:%2077%20at%20net/ipv4/tcp.c:100%20tcp_foo+0x1/0x2
@SP1 klog line=[%20%2012.3]%20Call%20Trace:
@SP1 item probe=tcp test=c family=ipv4 ids=TCP-BOUNDARY-SPLIT
@SP1 begin probe=tcp test=c family=ipv4 ids=TCP-BOUNDARY-SPLIT
@SP1 end verdict=pass message=
@SP1 exit status=0
@SP1 health when=after taint=4608
@SP1 klog line=[%20%2013.0]%20BUG:%20scheduling%20while%20atomic:%20x/1/0x2
@SP1 guest-done
"""


def test_kernel_health_names_the_item_after_which_the_kernel_warned():
    """A fake console stream: taint W appears after item b (E was there
    before the run and is not the run's), a BUG line only at the end."""
    parsed = protocol.parse_framed(HEALTH_STREAM, 10)
    assert [r["verdict"] for r in parsed["results"]] == ["pass"] * 3 and parsed["done"]
    h = health.kernel_health(parsed["health"])
    assert (h["taint_before"], h["taint_after"]) == (4096, 4608)
    assert [p["item"] for p in h["problems"]] == ["tcp/b[ipv6]", None]
    warn, bug = h["problems"]
    assert warn["new_taint"] == "W"
    assert warn["message"].startswith("guest kernel: a WARNING after tcp/b[ipv6] (new taint W")
    assert "net/ipv4/tcp.c:100" in warn["message"]
    assert bug["message"].startswith("guest kernel: a BUG during the run: BUG: scheduling")


def test_a_quiet_kernel_and_an_old_stream_have_no_health_problems():
    quiet = "\n".join(l for l in HEALTH_STREAM.splitlines() if "klog" not in l and
                      "taint=4608" not in l)
    assert health.kernel_health(protocol.parse_framed(quiet, 10)["health"])["problems"] == []
    # A stream without health lines (an older init) parses as before.
    assert health.kernel_health(protocol.parse_framed(STREAM, 10)["health"]) == {
        "taint_before": None, "taint_after": None, "problems": []}
    assert health.taint_flags(1 << 9 | 1 << 7 | 1 << 13) == "DWE"


@pytest.mark.parametrize("argv,timeout,status", [
    (["true"], 5, 0), (["sh", "-c", "exit 3"], 5, 3), (["sleep", "5"], 1, 143)],
    ids=["exit-0", "exit-3", "timeout"])
def test_sp_isolate_health_leaves_the_taint_flags_after_the_item(tmp_path, argv, timeout, status):
    """--health FILE: the guest runner reads the taint flags after each
    item from FILE with its shell's own read (no process per item), on
    every way the item ends, the timeout's included."""
    f = tmp_path / "taint"
    f.write_text("a stale and longer value\n")
    r = subprocess.run([str(ROOT / "build" / "sp-isolate"), "--health", str(f), "--timeout",
                        str(timeout), "--"] + argv, capture_output=True, text=True)
    assert r.returncode == status, r.stderr
    assert f.read_text() == Path("/proc/sys/kernel/tainted").read_text()
    r = subprocess.run([str(ROOT / "build" / "sp-isolate"), "--health", str(tmp_path / "no" / "f"),
                        "--", "true"], capture_output=True, text=True)
    assert r.returncode == 2 and "sp-isolate: --health" in r.stderr


POKE = r"""#!/bin/sh
# A fake probe for the guest: item "warns" taints the kernel the way a
# WARN() does (TAINT_WARN, bit 9, through /proc/sys/kernel/tainted, a real
# kernel interface) and logs a WARNING-shaped line through /dev/kmsg.
case "$1" in
--list)
	for t in before warns after; do
		echo "@SP1 test probe=kpoke name=$t ids=PROC-ZOMBIE families=none"
	done ;;
--env) echo "@SP1 env key=libc value=none" ;;
--run)
	if [ "$2" = warns ]; then
		echo "WARNING: CPU: 0 PID: $$ at net/core/sock.c:1 sockprobe_poke+0x0/0x0" >/dev/kmsg
		# One write(2): sysctl ignores what comes at a later offset, and
		# busybox's echo may write in pieces.
		echo 512 | dd of=/proc/sys/kernel/tainted 2>/dev/null
	fi
	echo "@SP1 begin probe=kpoke test=$2 family=none ids=PROC-ZOMBIE"
	echo "@SP1 end verdict=pass message=" ;;
esac
"""
# sp-isolate's part in it: with --health FILE, the taint flags after the item.
ISOLATE = """#!/bin/sh
hf=
while [ "$1" != "--" ]; do [ "$1" = --health ] && hf=$2; shift; done
shift
"$@"
st=$?
[ -z "$hf" ] || cat /proc/sys/kernel/tainted >"$hf"
exit $st
"""


@pytest.mark.skipif(not rootfs.BUSYBOX.exists(), reason="busybox-static is not installed")
@pytest.mark.parametrize("kind", ["uml", "qemu"])
def test_a_guest_kernel_that_warns_fails_the_run_and_names_the_item(tmp_path, capsys, kind):
    """A real guest (UML; QEMU with Debian's 6.1, TCG or KVM) whose second
    item taints the kernel: the run fails (exit 1), one line names the
    item, the report and results.ktap keep it."""
    if kind == "uml" and not kernels.UML.exists():
        pytest.skip("user-mode-linux is not installed")
    if kind == "qemu" and (not shutil.which("qemu-system-x86_64") or not KERNEL_61):
        pytest.skip("qemu-system-x86 or the cached 6.1 kernel is missing")
    from runner.config import Config
    static = tmp_path / "static"
    (static / "probes").mkdir(parents=True)
    for path, text in ((static / "probes" / "kpoke", POKE), (static / "sp-isolate", ISOLATE)):
        path.write_text(text)
        path.chmod(0o755)
    cfg = Config(timeout=10.0, reports=str(tmp_path / "r"), build=str(tmp_path))
    target = uml.Uml() if kind == "uml" else qemu.Qemu(image=KERNEL_61[0])
    rc = target.run(cfg, work=tmp_path / "work")
    out = capsys.readouterr().out
    assert rc == 1, out
    lines = [l for l in out.splitlines() if l.startswith("guest kernel:")]
    assert len(lines) == 1, out
    assert lines[0].startswith("guest kernel: a WARNING after kpoke/warns (new taint W"), out
    assert "net/core/sock.c:1" in lines[0]
    doc = json.loads((tmp_path / "r" / "latest" / "report.json").read_text())
    assert [r["verdict"] for r in doc["results"]] == ["pass"] * 3
    assert {r["item"]: r.get("kernel_health") for r in doc["results"]} == {
        "kpoke/before": None, "kpoke/warns": lines, "kpoke/after": None}
    assert doc["environment"]["kernel_health"]["problems"][0]["new_taint"] == "W"
    ktap = (tmp_path / "r" / "latest" / "results.ktap").read_text()
    assert ktap.count("# guest kernel: a WARNING after kpoke/warns") == 2, ktap
    assert "1..2\n" in ktap and ktap.endswith("\nnot ok 2 guest-kernel-health\n"), ktap
    if shutil.which("prove"):
        r = subprocess.run(["prove", "--exec", "cat", str(tmp_path / "r/latest/results.ktap")],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "Failed 1/2" in r.stdout, r.stdout


def test_the_matrix_runs_as_many_steps_at_once_as_cores_and_memory_allow():
    from runner import matrix
    assert matrix.default_jobs(cores=2, available_mb=16000) == 4
    assert matrix.default_jobs(cores=1, available_mb=16000) == 2
    assert matrix.default_jobs(cores=8, available_mb=1500) == 2   # two QEMUs fit
    assert matrix.default_jobs(cores=8, available_mb=100) == 1    # never none
