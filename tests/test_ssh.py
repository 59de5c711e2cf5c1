"""TARGET=ssh://...: the bundle run on a "remote" machine, a real sshd
(Debian's openssh-server) started for these tests on loopback in a network
namespace of its own (as root; else 127.0.0.1 on a random high port), with
a throwaway key and config in a temporary directory. The same verdicts as
the bundle run here; a target that refuses, hangs or disappears mid-run:
one clear line, a partial report, nothing left behind on either side."""
import json
import os
import re
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, processes_running
from test_dist import FAKE, SELECTION, STATIC, verdicts

SSHD = Path("/usr/sbin/sshd")
PY = sys.executable

pytestmark = [
    pytest.mark.skipif(not SSHD.exists(), reason="openssh-server is not installed (make test installs it)"),
    pytest.mark.skipif(not shutil.which("ssh"), reason="openssh-client is not installed"),
    pytest.mark.skipif(not (STATIC / "sp-isolate").exists(), reason="make static first"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    def __init__(self, d: Path):
        self.d = d
        self.remote_tmp = d / "remote-tmp"   # the remote's TMPDIR (SetEnv/AcceptEnv)
        self.remote_tmp.mkdir()
        self.port = _free_port()
        for k in ("host_key", "user_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / k)],
                           check=True)
        shutil.copy(d / "user_key.pub", d / "authorized_keys")
        (d / "sshd_config").write_text(
            "Port %d\nListenAddress 127.0.0.1\nHostKey %s\nPidFile %s\nAuthorizedKeysFile %s\n"
            "StrictModes no\nUsePAM no\nPrintMotd no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "AcceptEnv TMPDIR\nLogLevel ERROR\n" % (
                self.port, d / "host_key", d / "sshd.pid", d / "authorized_keys"))
        # Host key checking off for this throwaway known_hosts file only.
        (d / "ssh_config").write_text(
            "Host *\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n"
            "  StrictHostKeyChecking no\n  SetEnv TMPDIR=%s\n" % (
                d / "user_key", d / "known_hosts", self.remote_tmp))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        cmd = [str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")]
        self.netns = os.geteuid() == 0 and shutil.which("unshare") and shutil.which("nsenter")
        if self.netns:
            cmd = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"] + cmd
        self.log = open(d / "sshd.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.ssh = ("nsenter --net=/proc/%d/ns/net " % self.proc.pid if self.netns else "") + \
            "ssh -F %s" % (d / "ssh_config")
        self.user = pwd.getpwuid(os.geteuid()).pw_name   # an unprivileged sshd: only oneself
        self.url = "ssh://%s@127.0.0.1:%d" % (self.user, self.port)
        end = time.monotonic() + 20
        while True:
            r = subprocess.run(self.ssh.split() + ["-o", "BatchMode=yes", "-p", str(self.port),
                                                   self.user + "@127.0.0.1", "true"],
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
            if time.monotonic() > end or self.proc.poll() is not None or \
                    "Permission denied" in r.stderr:   # up, but this user cannot log in
                self.stop()
                raise RuntimeError("the test sshd did not start: %s %s" % (
                    r.stderr.strip(), (d / "sshd.log").read_text()[-300:]))
            time.sleep(0.1)  # waiting for sshd to listen

    def env(self) -> dict:
        return dict(os.environ, SOCKPROBE_SSH=self.ssh)

    def sessions(self) -> list:
        """The per-connection sshd processes (children of the listener)."""
        out = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    st = (p / "stat").read_text()
                    if int(st[st.rindex(")") + 2:].split()[1]) == self.proc.pid:
                        out.append(int(p.name))
                except (OSError, ValueError):
                    pass
        return out

    def leftovers(self) -> list:
        return list(self.remote_tmp.iterdir())

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def start_sshd(d: Path) -> Sshd:
    """As root the test sshd must start; an unprivileged one (it can log in
    only its own user, whose shell may refuse) may not, and then skips."""
    try:
        return Sshd(d)
    except RuntimeError as e:
        if os.geteuid() == 0:
            raise
        pytest.skip("an unprivileged test sshd cannot start here: %s" % e)



def said(stderr: str) -> list:
    """stderr without the progress lines (runner/progress.py) that a run
    slower than 10 s writes there (a slow resolver, a loaded machine)."""
    return [l for l in stderr.strip().splitlines()
            if not re.search(r": (booting|running items), \d+/\d+, .* so far", l)]

@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    s = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield s
    s.stop()


def test_ssh_run_gives_the_host_verdicts_and_names_the_target(sshd, tmp_path):
    r = subprocess.run(["make", "--no-print-directory", "check", "TARGET=" + sshd.url,
                        "TESTS=" + " ".join(SELECTION), "REPORT_DIR=%s" % (tmp_path / "r")],
                       cwd=ROOT, env=sshd.env(), capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    assert "sockprobe: running on %s" % sshd.url in r.stdout
    doc = json.loads((tmp_path / "r" / "latest" / "report.json").read_text())
    assert doc["partial"] is False
    assert doc["environment"]["target"] == sshd.url
    assert doc["environment"]["guest"] == "ssh %s@127.0.0.1:%d" % (sshd.user, sshd.port)
    host = tmp_path / "h"
    h = subprocess.run([PY, "-m", "runner", "check", "-q", "--reports",
                        str(host)] + SELECTION, cwd=ROOT, capture_output=True, text=True)
    assert h.returncode in (0, 1), h.stdout
    assert verdicts(tmp_path / "r") == verdicts(host)
    assert len(verdicts(host)) == 22
    assert sshd.leftovers() == []
    assert not (ROOT / "build" / "guest" / "ssh" / "sockprobe.tar.gz").exists()


def test_refused_and_bad_targets_are_one_line(sshd, tmp_path):
    bad_host = [("ssh://root@no-such-host.invalid", "Could not resolve hostname")] \
        if sshd.netns else []   # (resolved inside the test's own network namespace only)
    for url, says in bad_host + [("ssh://root@127.0.0.1:1", "Connection refused"),
                      ("ssh://", "TARGET must be ssh://user@host[:port]"),
                      ("ssh://root@127.0.0.1:x", "port is not a number")]:
        r = subprocess.run([PY, "-m", "runner", "check", "--target", url, "--reports",
                            str(tmp_path / "r"), "udp"], cwd=ROOT, env=sshd.env(),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stdout + r.stderr
        assert len(said(r.stderr)) == 1 and says in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "r" / "latest").exists()


# ---- a run that hangs or loses its target: the fake probe ---------------------

def fake_build(tmp_path) -> Path:
    """A build directory whose static probes are the shell-script fake of
    test_dist (ok, bad, crash, hang) with the real static sp-isolate."""
    b = tmp_path / "build"
    (b / "static" / "probes").mkdir(parents=True)
    shutil.copy2(STATIC / "sp-isolate", b / "static" / "sp-isolate")
    f = b / "static" / "probes" / "fake"
    f.write_text(FAKE.replace("sleep 3171", "sleep 3172"))
    f.chmod(0o755)
    return b


def _start(sshd, tmp_path, extra):
    return subprocess.Popen([PY, "-m", "runner", "check", "--target", sshd.url, "--build",
                             str(fake_build(tmp_path)), "--reports", str(tmp_path / "r")] + extra,
                            cwd=ROOT, env=sshd.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_hang_started(sshd, p):
    end = time.monotonic() + 60
    while not list(sshd.remote_tmp.glob("*/*/hang-started")):
        assert p.poll() is None and time.monotonic() < end, p.stdout.read()
        time.sleep(0.05)  # waiting for the remote item to start


def _nothing_left(sshd):
    end = time.monotonic() + 10
    while (processes_running("sleep 3172") or sshd.leftovers()) and time.monotonic() < end:
        time.sleep(0.05)  # the remote runner finishing its clean-up
    assert not processes_running("sleep 3172")
    assert sshd.leftovers() == []
    assert not [p for p in processes_running("ssh -F %s" % sshd.d)]


def _partial(tmp_path):
    doc = json.loads((tmp_path / "r" / "latest" / "report.json").read_text())
    assert doc["partial"] is True
    res = {x["item"]: x["verdict"] for x in doc["results"]}
    assert res["fake/ok[ipv4]"] == "pass" and res["fake/bad"] == "fail"
    assert "fake/hang" not in res or res["fake/hang"] == "error"
    assert doc["environment"]["target"].startswith("ssh://")
    return doc


def test_a_target_that_hangs_is_bounded(sshd, tmp_path):
    p = _start(sshd, tmp_path, ["--timeout", "60", "--guest-timeout", "3"])
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 1, out
    line = [l for l in out.splitlines() if l.startswith("ssh: ")]
    assert len(line) == 1 and "did not finish within its bound of 3 s" in line[0] and "during fake/hang" in line[0], out
    _partial(tmp_path)
    _nothing_left(sshd)


needs_root_sshd = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="simulates a lost server by killing the test sshd's session processes; with "
           "an unprivileged sshd (seen in make test-fresh's container user run) that kill "
           "does not end the connection, so the loss is not simulated: root only")


@needs_root_sshd
def test_a_target_that_disappears_mid_run(sshd, tmp_path):
    p = _start(sshd, tmp_path, ["--timeout", "60"])
    _wait_hang_started(sshd, p)
    for pid in sshd.sessions():   # the connection's sshd dies: the target is gone
        os.kill(pid, signal.SIGKILL)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 1, out
    line = [l for l in out.splitlines() if l.startswith("ssh: ")]
    assert len(line) == 1 and "ended before the run finished during fake/hang" in line[0], out
    _partial(tmp_path)
    _nothing_left(sshd)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_the_remote_run_and_clean_up(sshd, tmp_path, sig):
    p = _start(sshd, tmp_path, ["--timeout", "60"])
    _wait_hang_started(sshd, p)
    p.send_signal(sig)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, out
    assert "partial report written" in out
    _partial(tmp_path)
    _nothing_left(sshd)


def test_a_target_that_cannot_run_the_probes_says_so(sshd, tmp_path):
    b = fake_build(tmp_path)
    alien = b / "static" / "probes" / "fake"   # runs here, not on the target (another arch)
    alien.write_text('#!/bin/sh\ncase "$0" in */sockprobe/probes/*) '
                     'echo "Exec format error" >&2; exit 126 ;; esac\n' + FAKE[len("#!/bin/sh\n"):])
    r = subprocess.run([PY, "-m", "runner", "check", "--target", sshd.url, "--build", str(b),
                        "--reports", str(tmp_path / "r")], cwd=ROOT, env=sshd.env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(said(r.stderr)) == 1
    assert "cannot run on ssh://" in r.stderr and "another architecture" in r.stderr, r.stderr
    _nothing_left(sshd)


def test_arch_sends_that_architectures_bundle(sshd, tmp_path):
    """ARCH=aarch64 with TARGET=ssh://: the remote gets the aarch64 bundle.
    This remote is x86-64: unless binfmt_misc hands aarch64 programs to
    qemu here, it cannot run them, and says so in one line, leaving
    nothing behind; where it can, the report names the architecture."""
    from conftest import arch_build
    arch_build("aarch64")
    r = subprocess.run([PY, "-m", "runner", "check", "--target", sshd.url, "--arch", "aarch64",
                        "--reports", str(tmp_path / "r"), "udp/udp_keeps_datagram_boundaries"],
                       cwd=ROOT, env=sshd.env(), capture_output=True, text=True, timeout=300)
    binfmt = any(Path("/proc/sys/fs/binfmt_misc").glob("*aarch64*"))
    if binfmt:
        assert r.returncode == 0, r.stdout + r.stderr
    else:
        assert r.returncode == 2, r.stdout + r.stderr
        assert len(said(r.stderr)) == 1
        assert "cannot run on ssh://" in r.stderr and "another architecture" in r.stderr
    _nothing_left(sshd)


@needs_root_sshd
def test_a_target_gone_for_good_still_cleans_up_after_itself(tmp_path):
    """The whole sshd dies mid-item (no clean-up connection possible): the
    remote runner removes its directory when its next write fails."""
    (tmp_path / "own-sshd").mkdir()
    s = start_sshd(tmp_path / "own-sshd")
    try:
        p = _start(s, tmp_path, ["--timeout", "2"])
        _wait_hang_started(s, p)
        for pid in s.sessions():
            os.kill(pid, signal.SIGKILL)
        s.proc.kill()   # the listener too: nobody answers any more
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 1, out
        assert "could not reach ssh %s@127.0.0.1:%d to remove" % (s.user, s.port) in out, out
        _partial(tmp_path)
        _nothing_left(s)
    finally:
        s.stop()
