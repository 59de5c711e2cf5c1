"""Run the suite under another kernel: User-mode Linux or a kernel booted
with QEMU, a minimal busybox root, the static probes.

This module is the machinery the guest targets share (runner/targets/uml.py,
runner/targets/qemu.py): the stream, the root image, Debian's kernels and
a bounded, interruptible way to run a VM. The guest's init
(runner/guest/init) runs every test each probe lists (`probe --list`),
for every family it names, and writes the probe protocol, framed per item by `item` and
`exit` lines, to a channel of its own: a second console under UML, the second
serial port under QEMU (the console keeps the kernel's messages). The
stream is parsed here with the same protocol.interpret as a host run and
written as the same report.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from . import protocol

ROOT = Path(__file__).resolve().parent.parent
INIT = Path(__file__).resolve().parent / "guest" / "init"
RUN = Path(__file__).resolve().parent / "guest" / "run"  # the POSIX sh runner init calls
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sockprobe" / "kernels"
UML = Path("/usr/bin/linux.uml")
UML_MODULES = Path("/usr/lib/uml/modules")
BUSYBOX = Path("/bin/busybox")
DEBIAN_META = {"6.1": "linux-image-cloud-amd64", "6.12": "linux-image-6.12-cloud-amd64"}
# Timeout kills with SIGTERM inside the guest: status 143 means timeout.
TIMEOUT_STATUS = 128 + signal.SIGTERM


class GuestError(Exception):
    pass


# ---- the stream ----------------------------------------------------------

CUT_SHORT = "the guest stopped during this item (kernel crash or hang?)"


def parse_stream(text: str, item_timeout: float, cut: str | None = CUT_SHORT) -> dict:
    """Guest stream -> {kernel, env, results, done}. An item that started
    but never reported an exit (the guest died) is an error with the
    message `cut`; with cut=None (the run was interrupted) it is left out,
    like the items that never started."""
    from .execute import Item, result_record
    env, results, health = {}, [], []
    kernel, done = None, False
    cur, lines = None, []
    last = None  # the item that ran last (kernel health names it)

    def close(status):
        if status is None and cut is None:
            return  # the run was stopped on purpose: the item did not run
        it = Item(probe=cur.get("probe", "?"), binary="", test=cur.get("test", "?"),
                  family=cur.get("family", "none"),
                  ids=[i for i in cur.get("ids", "").split(",") if i])
        text = "\n".join(lines)
        if status is None:
            out = protocol.interpret(text, None)
            if out.verdict == "error" or not any(l for l in lines if "@SP1 end" in l):
                out.verdict = "error"
                out.message = cut
        elif status == TIMEOUT_STATUS:
            out = protocol.interpret(text, -signal.SIGKILL, True, item_timeout)
        elif status > 128:
            out = protocol.interpret(text, -(status - 128))
        else:
            out = protocol.interpret(text, status)
        results.append(result_record(it, out, 0.0, ""))
        nonlocal last
        last = results[-1]["item"]

    for line in text.splitlines():
        ev = protocol.parse_line(line)
        if ev is None:
            if cur is not None:
                lines.append(line)
            continue
        if ev.kind == "guest":
            kernel = ev.fields.get("kernel")
        elif ev.kind == "guest-done":
            done = True
        elif ev.kind == "health" and cur is None:
            health.append({"when": ev.fields.get("when", ""), "taint": ev.fields.get("taint", ""),
                           "after": last, "klog": []})
        elif ev.kind == "klog" and cur is None and health:
            health[-1]["klog"].append(ev.fields.get("line", ""))
        elif ev.kind == "env" and cur is None:
            env[ev.fields.get("key", "")] = ev.fields.get("value", "")
        elif ev.kind == "item":
            if cur is not None:
                close(None)
            cur, lines = ev.fields, []
        elif ev.kind == "exit" and cur is not None:
            try:
                status = int(ev.fields.get("status", ""))
            except ValueError:
                status = None
            close(status)
            cur, lines = None, []
        elif cur is not None:
            lines.append(line[line.find(protocol.PREFIX):])
    if cur is not None:
        close(None)
    return {"kernel": kernel, "env": env, "results": results, "done": done, "health": health}


# ---- kernel health -----------------------------------------------------------

# /proc/sys/kernel/tainted, bit by bit (Documentation/admin-guide/tainted-kernels.rst).
TAINT_LETTERS = "PFSRMBUDAWCIOELKXTNJ"
# Kernel log lines that say the kernel went wrong, whatever the taint says.
BAD_KLOG = re.compile(r"WARNING:|\bBUG:|kernel BUG at|Oops|general protection fault|"
                      r"Call Trace:|UBSAN:|KASAN:|KFENCE:|refcount_t:|list_(add|del) corruption|"
                      r"soft lockup|hard LOCKUP|rcu_\w+ detected stall|blocked for more than|"
                      r"Kernel panic|RIP:")


def taint_flags(mask: int) -> str:
    return "".join(TAINT_LETTERS[b] if b < len(TAINT_LETTERS) else "?%d" % b
                   for b in range(mask.bit_length()) if mask >> b & 1)


def _int(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def kernel_health(health: list) -> dict:
    """The `health` records of a stream -> {taint_before, taint_after,
    problems: [{item, new_taint, lines, message}]}: a new taint flag or a
    WARNING/oops/BUG line in the kernel's log during the run is a problem,
    named after the item that had just run when the guest's init saw it
    (item None: seen only at the end of the run)."""
    before = next((_int(h["taint"]) for h in health if h["when"] == "before"), None)
    after = next((_int(h["taint"]) for h in reversed(health) if h["when"] == "after"), None)
    problems, seen = [], before or 0
    for h in health:
        if h["when"] == "before":
            continue
        t = _int(h["taint"])
        new = (t & ~seen) if t is not None else 0
        if t is not None:
            seen |= t
        bad = [l for l in h["klog"] if BAD_KLOG.search(l)]
        if not new and not bad:
            continue
        what = ("an oops" if any(re.search(r"Oops|general protection fault", l) for l in bad)
                else "a BUG" if any(re.search(r"\bBUG:|kernel BUG at", l) for l in bad)
                else "a WARNING" if any("WARNING:" in l for l in bad)
                else "a kernel error" if bad else "a new taint")
        where = ("after %s" % h["after"] if h["when"] == "item" and h["after"]
                 else "during the run")
        msg = "guest kernel: %s %s" % (what, where)
        if new:
            msg += " (new taint %s, tainted=%d)" % (taint_flags(new), t)
        if bad:
            msg += ": %s" % re.sub(r"^\[[^\]]*\]\s*", "", bad[0]).strip()[:200]
        problems.append({"item": h["after"] if h["when"] == "item" else None,
                         "new_taint": taint_flags(new), "lines": bad or h["klog"][-5:],
                         "message": msg})
    return {"taint_before": before, "taint_after": after, "problems": problems}


def init_args(item_timeout: float, tests=()) -> list:
    """The kernel command line words runner/guest/init reads."""
    args = ["sockprobe.timeout=%d" % max(1, int(item_timeout))]
    if tests:
        args.append("sockprobe.tests=%s" % ",".join(tests))
    return args


# ---- the root file system --------------------------------------------------

def build_root(dest: Path, static: Path, modules=(), dns_files=None) -> Path:
    """The guest's root: busybox, init, the runner, sp-isolate, the probes,
    kernel modules and the fixture DNS server: this machine's dnsmasq with
    what ldd names, or dns_files [(file, path in the root)] (a guest of
    another architecture: debarch.dns_server; [] for none, and then its
    DNS items skip saying there is no dnsmasq)."""
    for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "probes", "modules", "etc"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    if not BUSYBOX.exists():
        raise GuestError("busybox-static is not installed (apt-get install busybox-static)")
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    if not (dest / "bin" / "sh").exists():
        os.symlink("busybox", dest / "bin" / "sh")
    shutil.copy2(INIT, dest / "init")
    (dest / "init").chmod(0o755)
    shutil.copy2(RUN, dest / "sockprobe-run")
    (dest / "sockprobe-run").chmod(0o755)
    shutil.copy2(static / "sp-isolate", dest / "sp-isolate")
    probes = sorted((static / "probes").iterdir())
    if not probes:
        raise GuestError("no static probes in %s: run `make static`" % static)
    for p in probes:
        shutil.copy2(p, dest / "probes" / p.name)
    for n, m in enumerate(modules, 1):
        shutil.copy2(m, dest / "modules" / ("%02d-%s" % (n, m.name)))
    add_dns_server(dest, dns_files)
    return dest


# The DNS items' fixture server (cases/dns.c): Debian's dnsmasq, a glibc
# program, with the shared libraries ldd names and the dynamic loader, at
# the same paths as on the host. The probes are static glibc programs (its
# files and dns services are built in): their resolver reads
# /etc/nsswitch.conf, /etc/resolv.conf and /etc/hosts, which the items bind-mount
# from /fixtures/dns inside their own mount namespace (a bind mount needs
# a file to cover, so the root has placeholders). Without dnsmasq on the
# host the DNS items skip in the guest with the reason, as on the host.
DNSMASQ = Path("/usr/sbin/dnsmasq")
GUEST_ETC = {
    "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
    "resolv.conf": "",
    "nsswitch.conf": "hosts: files dns\n",
    # dnsmasq runs --user=root: glibc looks the name up in /etc/passwd.
    "passwd": "root:x:0:0:root:/:/bin/sh\n",
    "group": "root:x:0:\n",
}


def shared_libraries(binary: Path) -> list:
    """The files a dynamically linked binary loads (ldd), loader included."""
    r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    if r.returncode != 0:
        raise GuestError("ldd %s failed: %s" % (binary, (r.stderr or r.stdout).strip()[-200:]))
    found = []
    for line in r.stdout.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            found.append(Path(m.group(1)))
    return found


def add_dns_server(dest: Path, files=None) -> bool:
    """The DNS fixtures, the /etc files the items bind-mount over, and the
    server: files [(file, path in the root)], by default this machine's
    dnsmasq and every library ldd names, at the same paths."""
    for name, text in GUEST_ETC.items():
        if not (dest / "etc" / name).exists():
            (dest / "etc" / name).write_text(text)
    shutil.copytree(ROOT / "fixtures" / "dns", dest / "fixtures" / "dns", dirs_exist_ok=True)
    if files is None:
        if not DNSMASQ.exists():
            return False
        files = [(f, str(f).lstrip("/")) for f in [DNSMASQ] + shared_libraries(DNSMASQ)]
    for f, rel in files:
        to = dest / rel
        to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, to)  # follows symlinks: the library under its soname
    return bool(files)


def write_cpio(root: Path, out: Path) -> Path:
    """An initramfs (newc cpio) of root, written without external tools."""
    ino = 1

    def entry(f, name, mode, data=b"", nlink=1):
        nonlocal ino
        hdr = "070701" + "".join("%08X" % v for v in (
            ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
        ino += 1
        f.write(hdr.encode() + name.encode() + b"\0")
        f.write(b"\0" * ((4 - (110 + len(name) + 1) % 4) % 4))
        f.write(data)
        f.write(b"\0" * ((4 - len(data) % 4) % 4))

    with open(out, "wb") as f:
        for path in sorted(root.rglob("*")):
            rel = str(path.relative_to(root))
            st = path.lstat()
            if path.is_symlink():
                entry(f, rel, 0o120777, os.readlink(path).encode())
            elif path.is_dir():
                entry(f, rel, 0o040755, nlink=2)
            else:
                entry(f, rel, 0o100000 | (st.st_mode & 0o777), path.read_bytes())
        entry(f, "TRAILER!!!", 0)
    return out


# ---- kernels ---------------------------------------------------------------

def debian_kernel(series: str) -> Path:
    """vmlinuz of Debian's cloud kernel for a series, fetched once into the
    cache (Debian drops old versions, so follow the meta-package)."""
    meta = DEBIAN_META[series]
    dep = subprocess.run(["apt-cache", "depends", meta], capture_output=True, text=True)
    m = re.search(r"Depends: (linux-image-[^\s]+)", dep.stdout)
    if not m:
        raise GuestError("cannot find the kernel package behind %s (apt-get update?)" % meta)
    pkg = m.group(1)
    dest = CACHE / pkg
    found = sorted(dest.glob("boot/vmlinuz-*"))
    if found:
        return found[0]
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob("*.deb"))
        if r.returncode != 0 or not debs:
            raise GuestError("apt-get download %s failed: %s" % (pkg, (r.stderr or r.stdout).strip()[-200:]))
        part = dest.with_name(dest.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        x = subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(part)], capture_output=True, text=True)
        if x.returncode != 0:
            raise GuestError("cannot unpack %s: %s" % (debs[0].name, x.stderr.strip()[-200:]))
        shutil.rmtree(dest, ignore_errors=True)
        part.rename(dest)
    found = sorted(dest.glob("boot/vmlinuz-*"))
    if not found:
        raise GuestError("%s has no boot/vmlinuz" % pkg)
    return found[0]


def uml_modules() -> list:
    """crc-ccitt then ipv6: Debian's UML has IPv6 as a module."""
    vers = sorted(UML_MODULES.iterdir()) if UML_MODULES.is_dir() else []
    if not vers:
        return []
    base = vers[-1] / "kernel"
    mods = [base / "lib" / "crc-ccitt.ko", base / "net" / "ipv6" / "ipv6.ko"]
    return [m for m in mods if m.exists()]


# ---- booting -----------------------------------------------------------------

try:
    import ctypes
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - no libc to ask
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def _die_with_runner():
    """In the VM's process, before exec: SIGKILL when the runner dies, so a
    runner killed outright (SIGKILL, OOM) still takes its VM along."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@contextlib.contextmanager
def hold_signals():
    """Ctrl-C or SIGTERM arriving while a VM is being ended or a report is
    being written is noted (the list yielded), not raised: a second
    Ctrl-C must not cut the clean-up short."""
    got = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, lambda signum, frame: got.append(signum))
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def session_members(sid: int) -> list:
    """Pids of live processes in session sid (a VM and everything it
    started: UML runs the guest's processes as host processes)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            st = (d / "stat").read_text()
            rest = st[st.rindex(")") + 2:].split()
        except (OSError, ValueError):
            continue
        if rest[0] != "Z" and int(rest[3]) == sid:
            found.append(int(d.name))
    return found


def _end_session(p: subprocess.Popen, bound_s: float = 10.0) -> None:
    """SIGKILL the VM's whole session and wait (bounded) until none of it is
    left: the runner returns only when the VM is gone."""
    end = time.monotonic() + bound_s
    while True:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in session_members(p.pid):  # in case one left the group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if p.returncode is None:
            p.wait()
        if not session_members(p.pid) or time.monotonic() > end:
            return
        time.sleep(0.02)  # the kernel reaping what was killed


def _size(path) -> int:
    try:
        return os.stat(path).st_size
    except (OSError, TypeError):
        return 0


def _run_bounded(cmd, console: Path, bound_s: float, env=None, cwd=None, *,
                 guest_console: Path | None = None, stream: Path | None = None,
                 boot_bound_s: float | None = None, on_stream=None, pass_fds=()) -> str:
    """Run a VM in a session of its own; its stdout and stderr go to
    console. End it on power-off ("exited"), on a kernel panic seen on
    console or guest_console ("panicked"), when neither guest_console nor
    stream shows a byte within boot_bound_s ("silent"), or when bound_s
    expires ("hung"). on_stream(bytes) is given the stream as it grows (b""
    on rounds where it did not).
    Ctrl-C or SIGTERM (KeyboardInterrupt) end the VM at once too: on every
    way out its whole session is killed before this returns or raises."""
    with open(console, "wb") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=env, cwd=cwd, pass_fds=pass_fds,
                             preexec_fn=_die_with_runner)
    start = time.monotonic()
    how, offset = "exited", 0
    panic_in = [console] + ([guest_console] if guest_console else [])
    try:
        while True:
            ended = p.poll() is not None
            if on_stream is not None:  # called on every round: progress ticks on it
                data = b""
                if stream is not None and _size(stream) > offset:
                    with open(stream, "rb") as f:
                        f.seek(offset)
                        data = f.read()
                    offset += len(data)
                on_stream(data)
            if ended:
                break
            now = time.monotonic() - start
            if now > bound_s:
                how = "hung"
                break
            if boot_bound_s is not None and now > boot_bound_s and \
                    not _size(stream) and not _size(guest_console):
                how = "silent"
                break
            if any(b"Kernel panic" in _tail(f, 65536) for f in panic_in):
                how = "panicked"
                break
            time.sleep(0.2)  # the host watching a VM, not a probe waiting
    finally:
        with hold_signals():
            _end_session(p)  # UML leaves helpers: take the whole session
    if how == "exited" and any(b"Kernel panic" in _tail(f, 262144) for f in panic_in):
        how = "panicked"  # UML aborts at once after panicking
    return how


def _tail(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, _size(path) - n))
            return f.read()
    except OSError:
        return b""


def describe_failure(how: str, console: Path, boot_bound_s: float | None = None) -> str:
    tail = console.read_text(errors="replace").strip().splitlines()[-3:] if console.exists() else []
    last = " / ".join(l.strip() for l in tail)[-300:]
    if how == "panicked":
        text = console.read_text(errors="replace")
        line = [l for l in text.splitlines() if "Kernel panic" in l]
        return "the guest kernel panicked: %s" % (line[-1].strip() if line else last)
    if how == "silent":
        return "the guest printed nothing within %s s of booting (last console lines: %s)" % (
            "%g" % boot_bound_s if boot_bound_s else "the boot bound", last or "none")
    if how == "hung":
        return "the guest did not finish within the bound (last console lines: %s)" % last
    return "the guest stopped before finishing the suite (last console lines: %s)" % last
