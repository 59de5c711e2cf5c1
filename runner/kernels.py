"""Kernels to boot: Debian's cloud kernels (fetched once into the cache,
following the meta-package) and User-mode Linux with its modules.
Another architecture's kernels: runner/debarch.py."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import GuestError

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sockprobe" / "kernels"
UML = Path("/usr/bin/linux.uml")
UML_MODULES = Path("/usr/lib/uml/modules")
DEBIAN_META = {"6.1": "linux-image-cloud-amd64", "6.12": "linux-image-6.12-cloud-amd64"}


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
