"""A guest's root file system: busybox, the guest init and the POSIX sh
runner (runner/sh/), sp-isolate, the static probes, kernel modules and the
fixture DNS server, as a directory (UML's hostfs) or an initramfs
(write_cpio, for QEMU)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from .errors import GuestError

ROOT = Path(__file__).resolve().parent.parent
SH = Path(__file__).resolve().parent / "sh"
INIT = SH / "init"   # the guest's init: brings the guest up, calls RUN
RUN = SH / "run"     # the POSIX sh runner: guests, bundles (make dist), ssh
BUSYBOX = Path("/bin/busybox")


def init_args(item_timeout: float, tests=()) -> list:
    """The kernel command line words runner/sh/init reads."""
    args = ["sockprobe.timeout=%d" % max(1, int(item_timeout))]
    if tests:
        args.append("sockprobe.tests=%s" % ",".join(tests))
    return args


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
