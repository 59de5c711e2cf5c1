"""Debian packages of another architecture (KERNEL=6.1 ARCH=aarch64):
Debian's arm64 cloud kernel and busybox-static:arm64, fetched once into
~/.cache/sockprobe/kernels/DEBARCH with apt's own client and a private arm64
package index under ~/.cache/sockprobe/apt-ARCH. The machine's apt
configuration is left alone (no dpkg --add-architecture)."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import kernels, rootfs
from .errors import GuestError

# ARCH -> (Debian architecture, cloud kernel meta-package per series)
KERNELS = {"aarch64": ("arm64", {"6.1": "linux-image-cloud-arm64",
                                 "6.12": "linux-image-6.12-cloud-arm64"})}
# Modules the arm64 guest needs for its stream channel (virtio console
# over virtio-mmio), in load order.
STREAM_MODULES = ("drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio.ko",
                  "drivers/virtio/virtio_mmio.ko", "drivers/char/virtio_console.ko")


def _apt(debarch: str) -> list:
    base = kernels.CACHE.parent / ("apt-" + debarch)
    for d in (base / "lists" / "partial", base / "cache" / "archives" / "partial"):
        d.mkdir(parents=True, exist_ok=True)
    return ["-o", "APT::Architecture=" + debarch, "-o", "APT::Architectures=" + debarch,
            "-o", "Dir::State::Lists=%s" % (base / "lists"),
            "-o", "Dir::Cache=%s" % (base / "cache"), "-o", "Dir::State::status=/dev/null",
            "-o", "APT::Sandbox::User=root"]


def _index(debarch: str, refresh: bool = False) -> list:
    opts = _apt(debarch)
    lists = kernels.CACHE.parent / ("apt-" + debarch) / "lists"
    if refresh or not any(lists.glob("*_Packages*")):
        r = subprocess.run(["apt-get", "-q"] + opts + ["update"], capture_output=True, text=True)
        if r.returncode != 0:
            raise GuestError("cannot fetch Debian's %s package index: %s"
                                   % (debarch, (r.stderr or r.stdout).strip()[-200:]))
    return opts


def _fetch(pkg: str, debarch: str, opts: list) -> Path:
    """PKG (a real package, not a meta one) unpacked under the cache."""
    dest = kernels.CACHE / debarch / pkg  # not beside the amd64 kernels: no glob mixes them
    if dest.is_dir():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(["apt-get", "-q"] + opts + ["download", pkg], cwd=tmp,
                           capture_output=True, text=True)
        debs = list(Path(tmp).glob("*.deb"))
        if r.returncode != 0 or not debs:
            raise GuestError("apt-get download %s:%s failed: %s" % (
                pkg, debarch, (r.stderr or r.stdout).strip()[-200:]))
        part = dest.with_name(dest.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        x = subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(part)], capture_output=True,
                           text=True)
        if x.returncode != 0:
            raise GuestError("cannot unpack %s: %s" % (debs[0].name, x.stderr.strip()[-200:]))
        part.rename(dest)
    return dest


def _package_of(path: Path) -> str:
    """The Debian package that ships path (dpkg -S), without :arch."""
    for p in (path, path.resolve()):
        r = subprocess.run(["dpkg", "-S", str(p)], capture_output=True, text=True)
        if r.returncode == 0 and ":" in r.stdout:
            return r.stdout.split(":", 1)[0].strip()
    raise GuestError("no Debian package ships %s (dpkg -S)" % path)


def dns_server(arch: str) -> list:
    """[(file, path in the guest root)]: Debian's dnsmasq for ARCH with the
    shared libraries it loads and the loader, from the same packages this
    machine's dnsmasq takes them from (ldd, then dpkg -S), fetched for ARCH
    into the cache. The guest's loader finds them in its multiarch
    directory, with no ld.so.cache."""
    debarch = KERNELS[arch][0]
    triple = arch + "-linux-gnu"
    if not rootfs.DNSMASQ.exists():
        raise GuestError("dnsmasq-base is not installed here")
    host = rootfs.shared_libraries(rootfs.DNSMASQ)
    opts = _index(debarch)
    server = _fetch("dnsmasq-base", debarch, opts) / "usr" / "sbin" / "dnsmasq"
    out = [(server, "usr/sbin/dnsmasq")]
    libs = {h.name for h in host if not h.name.startswith("ld-linux")}
    found = set()
    for pkg in sorted({_package_of(h) for h in host}):
        unpacked = _fetch(pkg, debarch, opts)
        for f in unpacked.rglob("*"):
            if f.parent.name == triple and f.name in libs and f.name not in found:
                found.add(f.name)
                out.append((f, "lib/%s/%s" % (triple, f.name)))
            elif f.name.startswith("ld-linux-") and f.parent.name == "lib":
                out.append((f, "lib/" + f.name))   # PT_INTERP: /lib/ld-linux-ARCH.so.1
    missing = libs - found
    if missing:
        raise GuestError("no %s build of %s in Debian's packages" % (debarch, ", ".join(sorted(missing))))
    return out


def _unxz(path: Path) -> Path:
    import lzma
    plain = path.with_suffix("")
    if not plain.exists():
        tmp = plain.with_name(plain.name + ".part")
        tmp.write_bytes(lzma.decompress(path.read_bytes()))
        tmp.rename(plain)
    return plain


def kernel(arch: str, series: str) -> tuple:
    """(Image, [modules for the stream channel], busybox) for ARCH's guest."""
    if arch not in KERNELS or series not in KERNELS[arch][1]:
        raise GuestError("KERNEL=%s with ARCH=%s is not supported (supported: %s)" % (
            series, arch, ", ".join("KERNEL=%s ARCH=%s" % (s, a)
                                    for a, (_, m) in KERNELS.items() for s in m)))
    try:
        return _kernel(arch, series, _index(KERNELS[arch][0]))
    except GuestError:
        # Debian drops old kernel versions: a stale index names one no
        # longer there. Refresh it once and try again.
        return _kernel(arch, series, _index(KERNELS[arch][0], refresh=True))


def _kernel(arch: str, series: str, opts: list) -> tuple:
    debarch, metas = KERNELS[arch]
    dep = subprocess.run(["apt-cache"] + opts + ["depends", metas[series]],
                         capture_output=True, text=True)
    m = re.search(r"Depends: (linux-image-[^\s]+)", dep.stdout)
    if not m:
        raise GuestError("cannot find the kernel package behind %s:%s"
                               % (metas[series], debarch))
    k = _fetch(m.group(1), debarch, opts)
    images = sorted(k.glob("boot/vmlinuz-*"))
    if not images:
        raise GuestError("%s has no boot/vmlinuz" % m.group(1))
    mods = []
    for rel in STREAM_MODULES:
        # 6.12 has virtio and the console built in and xz-compressed
        # modules (busybox insmod takes them plain): unpack once.
        found = sorted(k.glob("lib/modules/*/kernel/" + rel)) or \
            [_unxz(x) for x in sorted(k.glob("lib/modules/*/kernel/" + rel + ".xz"))]
        mods += found[:1]
    if not mods:
        raise GuestError("%s has no virtio modules" % m.group(1))
    busybox = _fetch("busybox-static", debarch, opts) / "bin" / "busybox"
    if not busybox.exists():
        raise GuestError("busybox-static:%s has no bin/busybox" % debarch)
    return images[0], mods, busybox
