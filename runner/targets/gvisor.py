"""gVisor (runsc, Debian's package): the probes run on gVisor's application
kernel instead of this machine's. KERNEL=gvisor uses gVisor's own TCP/IP
stack (netstack, `--network=none`: no interface but the sandbox's own
loopback); KERNEL=gvisor-hostinet passes socket calls through to the
network stack of the namespace runsc runs in (hostinet), which is always
a network namespace this module made for the run, with nothing but lo.
Nothing here touches the host's network: no veth, no NAT, no iptables.

The sandboxes' root is a small directory of our own: busybox (the shell
and the few tools the runner calls), the fixture DNS server with its
libraries, placeholder /etc files, and the tree of `make dist`'s bundle
as /sockprobe (copied, not packed and unpacked). Inside, the bundle's POSIX sh runner (runner/guest/run)
runs every selected item under sp-isolate and writes the one @SP1 stream
to the sandbox's stdout, which is the stream file here: the same path as
a bundle run anywhere, parsed like a guest's.

The platform (how gVisor traps system calls) is chosen by a bounded
check, once per boot of this machine and runsc version: systrap, then
KVM where /dev/kvm is usable, else ptrace; the progress line, the report
environment and the cache (~/.cache/sockprobe/gvisor.json) say which and
why.

SOCKPROBE_RUNSC_FLAGS adds runsc options (e.g. "--debug
--debug-log=/tmp/runsc/" to see why a sandbox ended).

Clean-up, on every way out (the end, the bound, Ctrl-C, SIGTERM):
runsc runs in a session of its own that is killed whole (proc.run_bounded);
the sandbox and gofer processes, which runsc puts in sessions of their
own, are found by the state directory they were given (--root) and
killed; the sandbox's state and root directories are removed. Only the
stream and runsc's log stay in the work directory.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .. import dist, kernels, proc, rootfs
from ..errors import GuestError
from .stream import StreamTarget

RUNSC = "runsc"
CACHE = kernels.CACHE.parent / "gvisor.json"
PLATFORM_CHECK_S = 10.0   # a platform that has not run `true` by then is not used
CLEANUP_BOUND_S = 10.0
MAX_SANDBOXES = 40       # a sandbox that ends during an item is followed by another
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


class GvisorError(GuestError):
    pass


def runsc_version() -> str:
    try:
        r = subprocess.run([RUNSC, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    first = (r.stdout or "").splitlines()
    return first[0].replace("runsc version", "").strip() if first else ""


def oci_config(args: list, own_netns: bool, env=(), rootfs="rootfs") -> dict:
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
        "root": {"path": str(rootfs), "readonly": False},
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
    if not rootfs.BUSYBOX.exists():
        raise GvisorError("busybox-static is not installed (apt-get install busybox-static)")
    shutil.copy2(rootfs.BUSYBOX, root / "bin" / "busybox")
    r = subprocess.run([str(rootfs.BUSYBOX), "--list"], capture_output=True, text=True)
    for name in r.stdout.split():
        if name != "busybox" and not (root / "bin" / name).exists():
            os.symlink("busybox", root / "bin" / name)
    return root


def bundle_tree(static: Path, dest: Path) -> Path:
    """The tree `make dist` packs (run, sp-isolate, probes/, fixtures/),
    copied as it is: gzip of the whole bundle takes seconds, a copy does
    not."""
    iso = static / "sp-isolate"
    probes = sorted(p for p in (static / "probes").glob("*") if p.is_file()) \
        if (static / "probes").is_dir() else []
    if not iso.exists() or not probes:
        raise GvisorError("the static probes are not built in %s: run `make static`" % static)
    (dest / "probes").mkdir(parents=True, exist_ok=True)
    shutil.copy2(rootfs.RUN, dest / "run")
    shutil.copy2(iso, dest / "sp-isolate")
    for p in probes:
        shutil.copy2(p, dest / "probes" / p.name)
    for d in dist.FIXTURE_DIRS:
        shutil.copytree(rootfs.ROOT / "fixtures" / d, dest / "fixtures" / d, dirs_exist_ok=True)
    return dest


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


def item_order(static: Path, tests: list) -> list:
    """The selected items in the order the bundle's runner runs them:
    (probe, test, family, "probe/test[family]")."""
    from .. import discover
    out = []
    for p in sorted((static / "probes").iterdir()):
        if tests and p.name not in tests:
            continue
        for it in discover.items_of(p):
            out.append((p.name, it.test, it.family, "%s/%s%s" % (
                p.name, it.test, "" if it.family == "none" else "[%s]" % it.family)))
    return out


def last_item(text: str):
    """(probe, test, family, name) of the last item a stream started, if
    it did not report its exit."""
    cur = None
    for line in text.splitlines():
        if line.startswith("@SP1 item "):
            f = dict(kv.split("=", 1) for kv in line.split()[2:] if "=" in kv)
            fam = f.get("family", "none")
            cur = (f.get("probe"), f.get("test"), fam, "%s/%s%s" % (
                f.get("probe"), f.get("test"), "" if fam == "none" else "[%s]" % fam))
        elif line.startswith("@SP1 exit "):
            cur = None
    return cur


def rest_after(order: list, stopped: tuple) -> list:
    """The runs that go on after the item a sandbox stopped in: the
    test's other families, then the probe's later tests, then the later
    probes: [(family or None, [selection])]."""
    keys = [o[:3] for o in order]
    if stopped[:3] not in keys:
        return []
    rest = order[keys.index(stopped[:3]) + 1:]
    plan = [(fam, ["%s/%s" % (p, t)]) for p, t, fam, _ in rest
            if (p, t) == stopped[:2]]
    later = [o for o in rest if (o[0], o[1]) != stopped[:2]]
    same_probe = [o for o in later if o[0] == stopped[0]]
    tests = []
    for p, t, _, _ in same_probe:
        if "%s/%s" % (p, t) not in tests:
            tests.append("%s/%s" % (p, t))
    probes = []
    for p, _, _, _ in later:
        if p != stopped[0] and p not in probes:
            probes.append(p)
    if tests or probes:
        plan.append((None, tests + probes))
    return plan


def panic_summary(log: Path) -> str:
    """One line on why gVisor's kernel stopped: the panic and the first
    gVisor function in its stack, from runsc's --panic-log."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "no panic report from runsc"
    lines = text.splitlines()
    what = next((l.strip() for l in lines if l.startswith(("panic:", "fatal error:"))), None)
    if what is None:
        return "no panic report from runsc"
    # The first frame of gVisor's own that is no helper (abi, marshalling).
    where = ""
    for l in lines[[l.strip() for l in lines].index(what):]:
        m = re.match(r"gvisor\.dev/gvisor/pkg/(\S+?)\((?:0x|\{|\)|\.\.\.)", l)
        if m and not where:
            where = m.group(1)
        if m and "/abi/" not in l and "Unmarshal" not in l and "Marshal" not in l:
            where = m.group(1)
            break
    return "gVisor's kernel panicked (%s%s)" % (what, " in " + where if where else "")


class Sandbox:
    """One runsc container: its work files and the command that runs it."""

    def __init__(self, work: Path, platform: str, network: str, args: list, env=(), rootfs=None):
        self.dir = work
        self.state = work / "runsc-state"      # runsc --root
        self.bundle = work / "oci"             # config.json (+ rootfs/ unless shared)
        self.rootfs = Path(rootfs) if rootfs else self.bundle / "rootfs"
        self.platform, self.network, self.args, self.env = platform, network, args, list(env)
        self.id = "sockprobe-%d-%s" % (os.getpid(), work.name)
        self.panic_log = None  # where runsc writes a panic of gVisor's kernel

    def write_config(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.bundle.mkdir(parents=True, exist_ok=True)
        (self.bundle / "config.json").write_text(json.dumps(
            oci_config(self.args, self.network == "netstack", self.env, self.rootfs), indent=1) + "\n")

    def command(self) -> list:
        """The command that runs the sandbox with its stdout in
        $SP_STREAM. hostinet: inside a network namespace of its own
        (unshare --net) with lo up, never the host's."""
        runsc = [RUNSC] + shlex.split(os.environ.get("SOCKPROBE_RUNSC_FLAGS", "")) + [
                 "--root=%s" % self.state, "--platform=%s" % self.platform,
                 "--network=%s" % ("none" if self.network == "netstack" else "host"),
                 "--overlay"] + (["--panic-log=%s" % self.panic_log] if self.panic_log else []) + [
                 "run", "--bundle", str(self.bundle), self.id]
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
        how = proc.run_bounded(box.command(), log, bound_s, env=env)
        out = box.dir / "out"
        if out.exists() and b"sockprobe-ok" in out.read_bytes():
            return ""
        if how == "hung":
            return "no result within %g s" % bound_s
        text = log.read_text(errors="replace").strip() if log.exists() else ""
        return text.splitlines()[-1][-200:] if text else "the sandbox ran nothing"
    finally:
        with proc.hold_signals():
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


def lane_count(items: int) -> int:
    """Sandboxes side by side: one more than there are cores (items spend
    much of their time waiting on events; measured on 2 busy cores, the
    whole suite took 69 s in one sandbox, 50 s in two, 42 s in three), at
    most 4, one for a handful of items; SOCKPROBE_GVISOR_LANES sets it."""
    env = os.environ.get("SOCKPROBE_GVISOR_LANES", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(4, (os.cpu_count() or 1) + 1, items // 20))


def split_probes(order: list, n: int) -> list:
    """The probes in n groups of about as many items each (largest
    first, each to the group with the fewest so far)."""
    count = {}
    for p, _, _, _ in order:
        count[p] = count.get(p, 0) + 1
    groups = [[] for _ in range(max(1, min(n, len(count))))]
    sizes = [0] * len(groups)
    for p in sorted(count, key=lambda p: (-count[p], p)):
        i = sizes.index(min(sizes))
        groups[i].append(p)
        sizes[i] += count[p]
    return [sorted(g) for g in groups if g]


class Lane:
    """Sandboxes, one after another, running one share of the probes."""

    def __init__(self, d: Path, probes: list, order: list):
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.order = [o for o in order if o[0] in probes]
        self.plan = [(None, list(probes))]  # what the next sandbox runs; None: nothing more
        self.box = None
        self.proc = None
        self.parts, self.offset, self.tail = [], 0, b""
        self.printed = False
        self.done = False   # the whole share ran

    def start(self, tmo: str) -> None:
        n = len(self.parts)
        if n >= MAX_SANDBOXES:
            self.plan = None
            return
        part = self.dir / ("stream.%d" % n)
        self.parts.append(part)
        self.offset, self.tail = 0, b""
        box = self.box
        box.args = ["/bin/sh", "-c", " ; ".join(
            "/bin/sh /%s/run -t %s%s %s" % (BUNDLE, tmo, " -f " + fam if fam else "", " ".join(sel))
            for fam, sel in self.plan)]
        box.panic_log = self.dir / ("panic.%d.log" % n)
        box.write_config()
        env = dict(os.environ, SP_STREAM=str(part), TMPDIR=str(self.dir),
                   SP_BUSYBOX=str(rootfs.BUSYBOX))
        with open(self.dir / ("runsc.%d.log" % n), "wb") as log:
            self.proc = subprocess.Popen(box.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                                         preexec_fn=proc.die_with_runner)
        self.plan = None

    def read(self) -> bytes:
        """Whole lines the running sandbox wrote since the last look."""
        if not self.parts:
            return b""
        part = self.parts[-1]
        if proc.size(part) <= self.offset:
            return b""
        with open(part, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        self.printed = True
        data, self.tail = (self.tail + data).rpartition(b"\n")[0::2] if b"\n" in self.tail + data \
            else (b"", self.tail + data)
        return data + b"\n" if data else b""

    def ended(self):
        """The sandbox ended: what comes next. (item, why) when it ended
        during an item and a new sandbox goes on after it."""
        proc.end_session(self.proc)
        self.proc = None
        end_sandbox(self.box.state)
        text = self.parts[-1].read_text(errors="replace") if self.parts[-1].exists() else ""
        if "@SP1 guest-done" in text.rsplit("@SP1 guest ", 1)[-1]:
            self.done = True
            return None
        stopped = last_item(text)
        if stopped is None:
            return None  # it ran no item: starting again would not help
        self.plan = rest_after(self.order, stopped) or None
        if self.plan is None:
            self.done = True  # it stopped in the share's last item
        return stopped[3], panic_summary(self.box.panic_log)

    def stop(self) -> None:
        if self.proc is not None:
            proc.end_session(self.proc)
            self.proc = None
        self.plan = None


class Gvisor(StreamTarget):
    kind = "gvisor"
    prefix = "gvisor"
    cut_short = dist.CUT_SHORT
    boot_bound_s = 30.0   # the sandboxes' first stream line within this
    isolation_label = "gvisor"
    accepts = frozenset()
    refusal = "the static probes run inside the sandbox as they are"

    def __init__(self, network: str = "netstack", entry=None):
        super().__init__(entry)
        if network not in NETWORKS.values():
            raise GvisorError("gVisor's network must be %s (got '%s')"
                              % (" or ".join(NETWORKS.values()), network))
        self.network = network
        self.platform, self.platform_why, self.version = None, "", ""
        self.lanes = 0

    def label(self) -> str:
        return self.entry.label if self.entry else next(k for k, v in NETWORKS.items()
                                                        if v == self.network)

    def prepare(self, say) -> None:
        name = self.label()
        if shutil.which(RUNSC) is None:
            raise GvisorError("gVisor is not installed (apt-get install runsc)")
        if os.geteuid() != 0:
            raise GvisorError("KERNEL=%s needs root: runsc makes the sandbox's namespaces "
                              "and mounts (run as root, or in a root container)" % name)
        if self.network == "hostinet" and shutil.which("unshare") is None:
            raise GvisorError("unshare (util-linux) is needed for the run's own network namespace")
        self.version = runsc_version()
        check = rootfs.ROOT / "build" / "guest" / "gvisor-platform-check"
        shutil.rmtree(check, ignore_errors=True)
        check.mkdir(parents=True)
        try:
            self.platform, self.platform_why = choose_platform(check, say)
        finally:
            shutil.rmtree(check, ignore_errors=True)
        self.accel = self.platform

    def describe(self) -> str:
        return "starting %s (runsc %s, platform %s: %s)" % (
            self.label(), self.version or "?", self.platform, self.platform_why)

    def start(self, static, work, tests, item_timeout, bound_s, on_stream, say) -> str:
        """Run the selection in sandboxes side by side (lanes, each its
        share of the probes). Where a sandbox ends during an item (gVisor's
        kernel panicked: the item is an error saying so), the lane's next
        sandbox goes on after that item."""
        self.stream_path = work / "stream"
        self.console = work / "runsc.log"
        self.panics = []
        tmo = str(max(1, int(-(-item_timeout // 1))))
        order = item_order(static, tests)
        # hostinet: each lane's network namespace is its own (unshare
        # --net); items share it one after another (sp-isolate: net=run).
        # Each lane's root is an overlay of its own, discarded with the
        # sandbox, and its items run one at a time: a fixture may mount in
        # it for one item where no private mount namespace can be had
        # (gVisor of 2022), as the DNS items' /etc files do.
        env = ["SOCKPROBE_ROOT=throwaway"] + (
            ["SOCKPROBE_RUN_NETNS=private"] if self.network == "hostinet" else [])
        root = work / "rootfs"
        lanes = [Lane(work / ("lane%d" % n), group, order) for n, group in
                 enumerate(split_probes(order, lane_count(len(order))))]
        self.lanes = len(lanes)
        started = time.monotonic()
        how = "exited"
        try:
            busybox_root(root)
            rootfs.add_dns_server(root)
            bundle_tree(static, root / BUNDLE)
            for lane in lanes:
                lane.box = Sandbox(lane.dir, self.platform, self.network, [], env, root)
            while True:
                for lane in lanes:
                    if lane.proc is None and lane.plan is not None:
                        lane.start(tmo)
                data = b"".join(lane.read() for lane in lanes)
                on_stream(data)
                for lane in lanes:
                    if lane.proc is not None and lane.proc.poll() is not None:
                        what = lane.ended()
                        if what:
                            self.panics.append(what[1])
                            say("sockprobe: the sandbox ended during %s (%s)%s" % (
                                what + ("; a new one goes on after it" if lane.plan else "",)))
                if all(lane.plan is None and lane.proc is None for lane in lanes):
                    break
                now = time.monotonic() - started
                if now > bound_s:
                    how = "hung"
                    break
                if now > self.boot_bound_s and not any(lane.printed for lane in lanes):
                    how = "silent"
                    break
                time.sleep(0.2)  # the host watching sandboxes, not a probe waiting
            if how == "exited" and not all(lane.done for lane in lanes):
                how = "ended"
            return how
        finally:
            with proc.hold_signals():
                for lane in lanes:
                    lane.stop()
                left = [pid for lane in lanes for pid in lane.box.clean()] if all(
                    lane.box for lane in lanes) else []
                if left:
                    say("sockprobe: gVisor processes %s did not end within %g s"
                        % (" ".join(map(str, left)), CLEANUP_BOUND_S))
                shutil.rmtree(root, ignore_errors=True)
                self._collect(work, lanes)

    def _collect(self, work: Path, lanes: list) -> None:
        """The lanes' streams as one (one guest-done, when every lane ran
        its whole share), their runsc logs as one console log."""
        done = bool(lanes) and all(lane.done for lane in lanes)
        with open(self.stream_path, "wb") as out:
            for lane in lanes:
                for part in lane.parts:
                    if part.exists():
                        out.writelines(l for l in part.read_bytes().splitlines(True)
                                       if not l.startswith(b"@SP1 guest-done"))
                        part.unlink()
            if done:
                out.write(b"@SP1 guest-done\n")
        with open(self.console, "wb") as out:
            for lane in lanes:
                for f in sorted(lane.dir.glob("runsc.*.log")) + sorted(lane.dir.glob("panic.*.log")):
                    out.write(("== %s/%s\n" % (lane.dir.name, f.name)).encode() + f.read_bytes())
                shutil.rmtree(lane.dir, ignore_errors=True)
        if self.panics:
            self.cut_short = "the sandbox ended during this item: %s" % "; ".join(
                sorted(set(self.panics)))

    def environment(self) -> dict:
        return {"guest": self.label(), "gvisor_network": self.network, "gvisor_lanes": self.lanes,
                "gvisor_platform": self.platform, "gvisor_platform_check": self.platform_why,
                "runsc_version": self.version}
