"""Guest kernels: the stream a guest's init writes, a panicking or hung
kernel, and the guest root image."""
import os
import shutil
import stat
import time

import pytest

from conftest import ROOT, processes_running, wait_gone
from runner import guest

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
    p = guest.parse_stream(STREAM, 10)
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
    p = guest.parse_stream("@SP1 guest kernel=x\n@SP1 guest-done\n", 10)
    assert p["done"] and p["results"] == []


def fake_vm(tmp_path, body):
    vm = tmp_path / "vm.sh"
    vm.write_text("#!/bin/sh\n" + body)
    vm.chmod(vm.stat().st_mode | stat.S_IEXEC)
    return [str(vm)]


def test_a_panicking_kernel_is_reported_at_once(tmp_path):
    console = tmp_path / "console.log"
    start = time.monotonic()
    how = guest._run_bounded(fake_vm(tmp_path, "echo 'Kernel panic - not syncing: VFS'; "
                                     "exec sleep 300\n"), console, 60)
    assert how == "panicked" and time.monotonic() - start < 10
    assert "panicked: Kernel panic - not syncing: VFS" in guest.describe_failure(how, console)
    assert wait_gone(str(tmp_path / "vm.sh"), find=processes_running) == []


def test_a_hung_kernel_ends_at_the_bound(tmp_path):
    console = tmp_path / "console.log"
    how = guest._run_bounded(fake_vm(tmp_path, "echo booting; exec sleep 300\n"), console, 1)
    assert how == "hung"
    assert "did not finish within the bound" in guest.describe_failure(how, console)
    assert wait_gone(str(tmp_path / "vm.sh"), find=processes_running) == []


@pytest.mark.skipif(not guest.UML.exists(), reason="user-mode-linux is not installed")
def test_a_real_kernel_panic_is_caught(tmp_path):
    """User-mode Linux with no init to run panics; we see it and end it."""
    console = tmp_path / "console.log"
    umltmp = tmp_path / "t"
    umltmp.mkdir()
    cmd = [str(guest.UML), "mem=64M", "rootfstype=hostfs", "rootflags=%s" % tmp_path,
           "init=/no-such-init", "con=null", "con0=null,fd:1", "ssl=null"]
    how = guest._run_bounded(cmd, console, 60, env=dict(os.environ, TMPDIR=str(umltmp)))
    assert how == "panicked"
    assert wait_gone("rootflags=%s" % tmp_path, find=processes_running) == []


STATIC = ROOT / "build" / "static"


@pytest.mark.skipif(not (STATIC / "sp-isolate").exists() or not guest.BUSYBOX.exists(),
                    reason="static probes or busybox-static not built/installed")
def test_guest_root_and_initramfs(tmp_path):
    root = guest.build_root(tmp_path / "root", STATIC)
    assert (root / "init").stat().st_mode & stat.S_IXUSR
    assert (root / "bin" / "busybox").exists() and os.readlink(root / "bin" / "sh") == "busybox"
    assert sorted(p.name for p in (root / "probes").iterdir()) == sorted(
        p.stem for p in (ROOT / "cases").glob("*.c"))
    cpio = guest.write_cpio(root, tmp_path / "initrd.cpio")
    data = cpio.read_bytes()
    assert data.startswith(b"070701") and b"TRAILER!!!" in data and b"probes/tcp" in data
    if shutil.which("cpio"):
        import subprocess
        out = subprocess.run(["cpio", "-t"], input=data, capture_output=True).stdout.decode()
        assert "init" in out.split() and "probes/tcp" in out.split()
