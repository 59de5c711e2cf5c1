"""gVisor (runsc, Debian's package): the probes run on gVisor's application
kernel instead of this machine's. KERNEL=gvisor uses gVisor's own TCP/IP
stack (netstack, `--network=none`: no interface but the sandbox's own
loopback); KERNEL=gvisor-hostinet passes socket calls through to the
network stack of the namespace runsc runs in (hostinet), which is always
a network namespace this module made for the run, with nothing but lo.
Nothing here touches the host's network: no veth, no NAT, no iptables.

The sandbox's root is a small directory of our own: busybox (the shell
and the few tools the runner calls), the fixture DNS server with its
libraries, placeholder /etc files, and the bundle of `make dist` unpacked
as /sockprobe. Inside, the bundle's POSIX sh runner (runner/guest/run)
runs every selected item under sp-isolate and writes the one @SP1 stream
to the sandbox's stdout, which is the stream file here: the same path as
a bundle run anywhere, parsed like a guest's.

The platform (how gVisor traps system calls) is chosen by a bounded
check, once per boot of this machine and runsc version: systrap, then
KVM where /dev/kvm is usable, else ptrace; the progress line, the report
environment and the cache (~/.cache/sockprobe/gvisor.json) say which and
why.

Clean-up, on every way out (the end, the bound, Ctrl-C, SIGTERM):
runsc runs in a session of its own that is killed whole (guest._run_bounded);
the sandbox and gofer processes, which runsc puts in sessions of their
own, are found by the state directory they were given (--root) and
killed; the sandbox's state and root directories are removed. Only the
stream and runsc's log stay in the work directory.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

from .. import dist, guest
from . import Target

RUNSC = "runsc"
CACHE = guest.CACHE.parent / "gvisor.json"
PLATFORM_CHECK_S = 10.0   # a platform that has not run `true` by then is not used
CLEANUP_BOUND_S = 10.0
NETWORKS = {"gvisor": "netstack", "gvisor-hostinet": "hostinet"}
# Every capability: the sandbox's root may make the items' namespaces.
CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
        "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
        "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ"]
BUNDLE = "sockprobe"


class GvisorError(guest.GuestError):
    pass


def runsc_version() -> str:
    try:
        r = subprocess.run([RUNSC, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    first = (r.stdout or "").splitlines()
    return first[0].replace("runsc version", "").strip() if first else ""


def oci_config(args: list, own_netns: bool, env=()) -> dict:
    """The OCI runtime spec of a sandbox running args as root in rootfs/.
    own_netns: a network namespace of the sandbox's own (netstack); none
    for hostinet, whose stack is that of the namespace runsc runs in."""
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if own_netns:
        namespaces.append({"type": "network"})
    return {
        "ociVersion": "1.0.0",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/bin:/sbin", "HOME=/", "TMPDIR=/tmp"] + list(env), "cwd": "/",
                    "capabilities": {k: CAPS for k in ("bounding", "effective", "permitted",
                                                        "inheritable")},
                    "noNewPrivileges": False},
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "sockprobe",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
                   {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                    "options": ["nosuid", "noexec", "nodev", "ro"]}],
        "linux": {"namespaces": namespaces},
    }


def busybox_root(root: Path) -> Path:
    """A root with busybox as /bin/sh and every applet it has."""
    for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "etc"):
        (root / d).mkdir(parents=True, exist_ok=True)
    if not guest.BUSYBOX.exists():
        raise GvisorError("busybox-static is not installed (apt-get install busybox-static)")
    shutil.copy2(guest.BUSYBOX, root / "bin" / "busybox")
    r = subprocess.run([str(guest.BUSYBOX), "--list"], capture_output=True, text=True)
    for name in r.stdout.split():
        if name != "busybox" and not (root / "bin" / name).exists():
            os.symlink("busybox", root / "bin" / name)
    return root


def sandbox_members(state: Path) -> list:
    """Pids of runsc's processes for this state directory (the sandbox and
    gofer run in sessions of their own): their command line names it."""
    mark = ("--root=%s" % state).encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if mark in (d / "cmdline").read_bytes().split(b"\0"):
                found.append(int(d.name))
        except OSError:
            continue
    return found


def end_sandbox(state: Path, bound_s: float = CLEANUP_BOUND_S) -> list:
    """Kill every process of this sandbox (bounded); the pids left."""
    end = time.monotonic() + bound_s
    while True:
        left = sandbox_members(state)
        if not left or time.monotonic() > end:
            return left
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)  # the kernel reaping what was killed


class Sandbox:
    """One runsc container: its work files and the command that runs it."""

    def __init__(self, work: Path, platform: str, network: str, args: list, env=()):
        self.dir = work
        self.state = work / "runsc-state"      # runsc --root
        self.bundle = work / "oci"             # config.json + rootfs/
        self.rootfs = self.bundle / "rootfs"
        self.platform, self.network, self.args, self.env = platform, network, args, list(env)
        self.id = "sockprobe-%d-%s" % (os.getpid(), work.name)

    def write_config(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.bundle.mkdir(parents=True, exist_ok=True)
        (self.bundle / "config.json").write_text(json.dumps(
            oci_config(self.args, self.network == "netstack", self.env), indent=1) + "\n")

    def command(self) -> list:
        """The command that runs the sandbox with its stdout in
        $SP_STREAM. hostinet: inside a network namespace of its own
        (unshare --net) with lo up, never the host's."""
        runsc = [RUNSC, "--root=%s" % self.state, "--platform=%s" % self.platform,
                 "--network=%s" % ("none" if self.network == "netstack" else "host"),
                 "--overlay", "run", "--bundle", str(self.bundle), self.id]
        if self.network == "netstack":
            return ["sh", "-c", 'exec "$@" >"$SP_STREAM"', "sh"] + runsc
        return ["unshare", "--net", "--", "sh", "-c",
                '"$SP_BUSYBOX" ip link set lo up || { echo "sockprobe: cannot bring up lo in '
                'the run\'s network namespace" >&2; exit 97; }; exec "$@" >"$SP_STREAM"',
                "sh"] + runsc

    def clean(self) -> list:
        """Every process gone, state and root removed; pids that survived."""
        left = end_sandbox(self.state)
        for d in (self.state, self.bundle):
            shutil.rmtree(d, ignore_errors=True)
        return left


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _cached_platform(version: str):
    try:
        v = json.loads(CACHE.read_text())
    except (OSError, ValueError):
        return None
    if v.get("boot_id") == _boot_id() != "" and v.get("runsc") == version and v.get("platform"):
        return v
    return None


def _remember(version: str, platform: str, why: str) -> None:
    try:
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        CACHE.write_text(json.dumps({"boot_id": _boot_id(), "runsc": version,
                                     "platform": platform, "why": why}) + "\n")
    except OSError:
        pass  # only a speed-up


def try_platform(platform: str, work: Path, bound_s: float = PLATFORM_CHECK_S) -> str:
    """Run `true` in a netstack sandbox on platform; "" when it worked,
    else why not (one line)."""
    box = Sandbox(work / ("check-" + platform), platform, "netstack", ["/bin/echo", "sockprobe-ok"])
    try:
        busybox_root(box.rootfs)
        box.write_config()
        log = box.dir / "runsc.log"
        env = dict(os.environ, SP_STREAM=str(box.dir / "out"), TMPDIR=str(box.dir))
        how = guest._run_bounded(box.command(), log, bound_s, env=env)
        out = box.dir / "out"
        if out.exists() and b"sockprobe-ok" in out.read_bytes():
            return ""
        if how == "hung":
            return "no result within %g s" % bound_s
        text = log.read_text(errors="replace").strip() if log.exists() else ""
        return text.splitlines()[-1][-200:] if text else "the sandbox ran nothing"
    finally:
        with guest.hold_signals():
            box.clean()
            shutil.rmtree(box.dir, ignore_errors=True)


def choose_platform(work: Path, say) -> tuple:
    """(platform, why): the cached verdict for this boot and runsc, or the
    first of systrap, kvm, ptrace that runs a sandbox within the bound."""
    version = runsc_version()
    cached = _cached_platform(version)
    if cached:
        return cached["platform"], cached.get("why", "") + " (checked earlier on this boot)"
    tried = []
    for p in ("systrap", "kvm", "ptrace"):
        if p == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
            tried.append("kvm: /dev/kvm is not usable")
            continue
        why = try_platform(p, work)
        if not why:
            text = "%s runs a sandbox%s" % (p, "; " + ", ".join(tried) if tried else "")
            _remember(version, p, text)
            return p, text
        tried.append("%s: %s" % (p, why))
    raise GvisorError("runsc runs no sandbox on this machine (%s)" % "; ".join(tried))


class Gvisor(Target):
    kind = "gvisor"
    prefix = "gvisor"
    cut_short = dist.CUT_SHORT
    boot_bound_s = 30.0   # the sandbox's first stream line within this

    def __init__(self, kernel: str = "gvisor"):
        super().__init__()
        if kernel not in NETWORKS:
            raise GvisorError("KERNEL must be %s (got '%s')" % (" or ".join(NETWORKS), kernel))
        self.name = kernel
        self.network = NETWORKS[kernel]
        self.platform, self.platform_why, self.version = None, "", ""
        self.box = None

    def label(self) -> str:
        return self.name

    def prepare(self, say) -> None:
        if shutil.which(RUNSC) is None:
            raise GvisorError("gVisor is not installed (apt-get install runsc)")
        if os.geteuid() != 0:
            raise GvisorError("KERNEL=%s needs root: runsc makes the sandbox's namespaces "
                              "and mounts (run as root, or in a root container)" % self.name)
        if self.network == "hostinet" and shutil.which("unshare") is None:
            raise GvisorError("unshare (util-linux) is needed for the run's own network namespace")
        self.version = runsc_version()
        check = guest.ROOT / "build" / "guest" / "gvisor-platform-check"
        shutil.rmtree(check, ignore_errors=True)
        check.mkdir(parents=True)
        try:
            self.platform, self.platform_why = choose_platform(check, say)
        finally:
            shutil.rmtree(check, ignore_errors=True)
        self.accel = self.platform

    def describe(self) -> str:
        return "starting %s (runsc %s, platform %s: %s)" % (
            self.name, self.version or "?", self.platform, self.platform_why)

    def boot(self, static, work, tests, item_timeout, bound_s, on_stream, say) -> str:
        self.stream_path = work / "stream"
        self.console = work / "runsc.log"
        args = ["/bin/sh", "/%s/run" % BUNDLE, "-t", str(max(1, int(-(-item_timeout // 1))))]
        # hostinet: the run's network namespace is its own; items that
        # cannot have one of their own share it (sp-isolate: net=run).
        env = ["SOCKPROBE_RUN_NETNS=private"] if self.network == "hostinet" else []
        self.box = box = Sandbox(work, self.platform, self.network, args + list(tests), env)
        try:
            busybox_root(box.rootfs)
            guest.add_dns_server(box.rootfs)
            tar = dist.make_bundle(static, work, name=BUNDLE)
            with tarfile.open(tar) as t:
                t.extractall(box.rootfs)
            tar.unlink()
            box.write_config()
            env = dict(os.environ, SP_STREAM=str(self.stream_path), TMPDIR=str(work),
                       SP_BUSYBOX=str(guest.BUSYBOX))
            return guest._run_bounded(box.command(), self.console, bound_s, env=env,
                                      stream=self.stream_path, boot_bound_s=self.boot_bound_s,
                                      on_stream=on_stream)
        finally:
            with guest.hold_signals():
                left = box.clean()
                if left:
                    say("sockprobe: gVisor processes %s did not end within %g s"
                        % (" ".join(map(str, left)), CLEANUP_BOUND_S))

    def environment(self) -> dict:
        return {"guest": self.name, "gvisor_network": self.network,
                "gvisor_platform": self.platform, "gvisor_platform_check": self.platform_why,
                "runsc_version": self.version}
