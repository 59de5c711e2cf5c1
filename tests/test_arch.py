"""ARCH=aarch64|armhf|riscv64|i386: cross-built static probes under
qemu-user on this kernel (runner/arch.py). A wrong ARCH is one line and
exit 2 before anything is installed; each installed architecture runs a
few items (one that execs its own binary again); the report names the
architecture and its emulator."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from runner import arch, discover, execute

BUILD = ROOT / "build"
HOST_ISOLATE = BUILD / "sp-isolate"


def make(*args):
    # Not the calling make's flags (make test runs in question mode).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "--no-print-directory"] + list(args), cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)


def check(tmp_path, *args):
    r = subprocess.run([sys.executable, "-m", "runner", "check", "-q", "--reports",
                        str(tmp_path)] + list(args), cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    doc = None
    if (tmp_path / "latest" / "report.json").exists():
        doc = json.loads((tmp_path / "latest" / "report.json").read_text())
    return r, doc


def one_error_line(r):
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# ---- validation ----------------------------------------------------------

@pytest.mark.parametrize("bad", ["sparc", "arm64", "aarch64 i386", "x86_64"])
def test_make_rejects_an_unknown_arch_before_installing_anything(bad):
    # -n: were ARCH accepted, make would print the deps/build recipe;
    # the check happens while the Makefile is read, so nothing runs.
    r = make("-n", "check", "ARCH=" + bad)
    assert r.returncode == 2
    assert "ARCH must be one of aarch64, armhf, riscv64, i386 (got '%s')" % bad in r.stderr
    assert "deps.sh" not in r.stdout and "apt-get" not in r.stdout + r.stderr


@pytest.mark.parametrize("other", ["KERNEL=uml", "LIBC=musl", "WRAP=true", "HOST=1"])
def test_make_rejects_arch_with_what_it_does_not_combine_with(other):
    r = make("-n", "check", "ARCH=aarch64", other)
    assert r.returncode == 2
    assert "ARCH=aarch64" in r.stderr and ("combine" in r.stderr or "not supported" in r.stderr)
    assert "deps.sh" not in r.stdout


def test_make_installs_the_cross_compiler_and_qemu_for_a_valid_arch():
    r = make("-n", "check", "ARCH=riscv64")
    assert r.returncode == 0, r.stderr
    assert "scripts/deps.sh gcc-riscv64-linux-gnu libc6-dev-riscv64-cross qemu-user-static" in r.stdout
    assert "cross-riscv64" in r.stdout and "'ARCH=riscv64'" in r.stdout


def test_runner_rejects_an_unknown_arch(tmp_path):
    line = one_error_line(check(tmp_path, "--arch", "mips")[0])
    assert "ARCH must be one of aarch64, armhf, riscv64, i386 (got 'mips')" in line


def test_runner_rejects_arch_with_wrap(tmp_path):
    line = one_error_line(check(tmp_path, "--arch", "aarch64", "--wrap", "true")[0])
    assert "does not combine with WRAP" in line


def test_runner_says_how_to_build_a_missing_arch(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    (build / "sp-isolate").symlink_to(HOST_ISOLATE)
    line = one_error_line(check(tmp_path, "--build", str(build), "--arch", "armhf")[0])
    assert "the armhf probes are not built: run `make check ARCH=armhf`" in line


def test_a_foreign_binary_without_its_qemu_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    fake = tmp_path / "probe"
    fake.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(11) + (183).to_bytes(2, "little") + bytes(44))
    assert arch.of(fake) == "aarch64"
    with pytest.raises(arch.ArchError, match="qemu-aarch64-static is not installed"):
        arch.emulator(fake)


def test_native_binaries_need_no_emulator():
    assert arch.of(HOST_ISOLATE) is None
    assert arch.emulator(HOST_ISOLATE) == []
    assert arch.isolated(HOST_ISOLATE) == []


# ---- runs under qemu-user, per installed architecture --------------------

def _need(name):
    triple, qemu = arch.ARCHES[name][4], arch.ARCHES[name][2]
    if shutil.which(triple + "-gcc") is None:
        pytest.skip("%s-gcc is not installed (make check ARCH=%s installs it)" % (triple, name))
    if shutil.which(qemu) is None:
        pytest.skip("%s is not installed (make check ARCH=%s installs it)" % (qemu, name))


def _built(name, *probes):
    want = ["build/%s/probes/%s" % (name, p) for p in probes] + ["build/%s/sp-isolate" % name]
    r = make(*want)
    assert r.returncode == 0, r.stdout + r.stderr
    return BUILD / name


@pytest.mark.parametrize("name", list(arch.ARCHES))
def test_items_run_under_qemu_user(name):
    _need(name)
    build = _built(name, "udp", "proc")
    s = execute.Settings(isolate=str(HOST_ISOLATE), timeout_s=20)
    udp = [i for i in discover.items_of(build / "probes" / "udp")
           if i.test == "udp_keeps_datagram_boundaries" and i.family == "ipv4"][0]
    # Really the foreign binary, under its qemu, inside the native sp-isolate.
    cmd = execute.command(udp, s)
    assert cmd[0] == str(HOST_ISOLATE) and arch.ARCHES[name][2] in " ".join(cmd)
    assert arch.of(udp.binary) == name
    r = execute.run_item(udp, s)
    # qemu-user has no io_uring: those paths say so (never a pass, never a fail).
    assert r["verdict"] == "pass" or (r["verdict"] == "skip" and "io_uring" in r["message"]), r
    # proc.c execs its own binary: needs qemu registered in binfmt_misc of
    # the item's user namespace (runner/arch-exec); 99 is the exec failing.
    wait = [i for i in discover.items_of(build / "probes" / "proc")
            if i.test == "wait_returns_pid_and_every_exit_status"][0]
    r = execute.run_item(wait, s)
    if arch.environment(build, HOST_ISOLATE)["arch_exec"].startswith("binfmt_misc"):
        assert r["verdict"] == "pass", r
    else:
        assert r["verdict"] == "fail" and "99" in r["message"], r


def test_errno_names_come_from_the_foreign_probe():
    """The probe names errnos itself (sp_errno_name, compiled against the
    target's headers); the runner passes the name through unmapped."""
    _need("aarch64")
    build = _built("aarch64", "udp")
    out = subprocess.run([str(HOST_ISOLATE), "--"] + arch.isolated(build / "probes" / "udp") +
                         [str(build / "probes" / "udp"), "--env"], capture_output=True,
                         text=True, timeout=60)
    assert "key=machine value=aarch64" in out.stdout
    runner_src = "".join(p.read_text() for p in (ROOT / "runner").glob("*.py"))
    # no errno-number -> name table in the runner (host OSError texts aside)
    assert "errorcode" not in runner_src and "os.strerror(" not in runner_src


def test_the_report_names_the_architecture_and_its_emulator(tmp_path):
    _need("aarch64")
    r = make("cross-aarch64")
    assert r.returncode == 0, r.stdout + r.stderr
    r, doc = check(tmp_path, "--arch", "aarch64", "udp/udp_keeps_datagram_boundaries")
    assert r.returncode == 0, r.stdout + r.stderr
    env = doc["environment"]
    assert env["arch"] == "aarch64" and env["machine"] == "aarch64"
    assert env["emulator"].startswith("qemu-aarch64-static ")
    assert env["arch_exec"]
    assert {x["verdict"] for x in doc["results"]} <= {"pass", "skip"}  # skip: no io_uring in qemu-user
    assert all(x["verdict"] == "pass" or "io_uring" in x["message"] for x in doc["results"])
    assert "arch aarch64 under qemu-aarch64-static" in r.stdout


def test_a_native_report_names_this_machines_architecture(tmp_path):
    r, doc = check(tmp_path, "udp/udp_keeps_datagram_boundaries")
    assert r.returncode == 0, r.stdout + r.stderr
    import platform
    assert doc["environment"]["arch"] == platform.machine()
    assert doc["environment"]["emulator"] is None


# ---- KERNEL=6.1 ARCH=aarch64: Debian's arm64 kernel under qemu-system-aarch64

def test_runner_rejects_a_guest_kernel_for_an_arch_without_one(tmp_path):
    line = one_error_line(check(tmp_path, "--kernel", "6.1", "--arch", "armhf")[0])
    assert "ARCH=armhf with KERNEL=6.1 is not supported" in line


def _arm64_cached():
    from runner import kernels
    return any(kernels.CACHE.glob("arm64/linux-image-*-cloud-arm64/boot/vmlinuz-*")) and \
        any(kernels.CACHE.glob("arm64/busybox-static/bin/busybox"))


@pytest.mark.skipif(shutil.which("qemu-system-aarch64") is None,
                    reason="qemu-system-aarch64 is not installed (make check KERNEL=6.1 ARCH=aarch64)")
@pytest.mark.skipif(not _arm64_cached(),
                    reason="the arm64 kernel is not fetched yet (make check KERNEL=6.1 ARCH=aarch64)")
def test_an_arm64_guest_runs_the_aarch64_probes(tmp_path):
    _need("aarch64")
    r = make("cross-aarch64")
    assert r.returncode == 0, r.stdout + r.stderr
    # dns: Debian's arm64 dnsmasq and its libraries serve the DNS items.
    r, doc = check(tmp_path, "--kernel", "6.1", "--arch", "aarch64", "--timeout", "10", "pipe",
                   "dns")
    assert r.returncode == 0, r.stdout + r.stderr
    assert {x["probe"] for x in doc["results"]} == {"pipe", "dns"}
    env = doc["environment"]
    assert env["arch"] == "aarch64" and env["machine"] == "aarch64"
    assert env["kernel"].endswith("-cloud-arm64") and env["guest_accel"] == "tcg"
    assert doc["results"] and {x["verdict"] for x in doc["results"]} == {"pass"}
