"""Other CPU architectures (ARCH=aarch64|armhf|riscv64|i386).

`make check ARCH=aarch64` builds the static probes and sp-isolate with
Debian's cross compiler into build/aarch64/ and runs the probes under
qemu-user (qemu-user-static) on this kernel. Which emulator a probe needs
is read from its own ELF header, so discovery (--list, --env) and every
item run the same binary the same way, with or without binfmt_misc.

sp-isolate stays native (build/sp-isolate): it is the harness, not the
system under test. An emulated sp-isolate would put qemu-user's handling
of unshare/mount/fork in front of every item, and one gap there would turn
the whole run into broken items instead of per-behavior findings. The
cross-built build/ARCH/sp-isolate is for guest kernels of that
architecture.
"""
from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from pathlib import Path

from .errors import UsageError

# ARCH name -> (ELF e_machine, ELF class 1=32/2=64, qemu-user binary,
#               Debian architecture, cross triple)
ARCHES = {
    "aarch64": (183, 2, "qemu-aarch64-static", "arm64", "aarch64-linux-gnu"),
    "armhf": (40, 1, "qemu-arm-static", "armhf", "arm-linux-gnueabihf"),
    "riscv64": (243, 2, "qemu-riscv64-static", "riscv64", "riscv64-linux-gnu"),
    "i386": (3, 1, "qemu-i386-static", "i386", "i686-linux-gnu"),
}
_HOST = {"x86_64": (62, 2), "amd64": (62, 2)}


class ArchError(UsageError):
    pass


def validate(name: str) -> str:
    if name not in ARCHES:
        raise ArchError("ARCH must be one of %s (got '%s')" % (", ".join(ARCHES), name))
    return name


@functools.lru_cache(maxsize=None)
def _elf(path: str):
    """(e_machine, class) of an ELF file, None if it is not one."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    order = "little" if head[5] == 1 else "big"
    return int.from_bytes(head[18:20], order), head[4]


def of(binary) -> str | None:
    """The ARCH name of a binary, or None when it is this machine's own."""
    e = _elf(str(binary))
    if e is None or e == _HOST.get(platform.machine()):
        return None
    for name, (machine, cls, *_rest) in ARCHES.items():
        if (machine, cls) == e:
            return name
    return None


def emulator(binary) -> list:
    """The command prefix a binary needs on this machine: [] for a native
    one, [/usr/bin/qemu-ARCH-static] for another architecture."""
    name = of(binary)
    if name is None:
        return []
    qemu = shutil.which(ARCHES[name][2])
    if qemu is None:
        raise ArchError("%s is an %s binary and %s is not installed: "
                        "run `make check ARCH=%s` (it installs qemu-user-static)"
                        % (binary, name, ARCHES[name][2], name))
    # env: the context switches counted are qemu's thread's too (arch-exec)
    return ["/usr/bin/env", "SOCKPROBE_BLOCK_EVIDENCE=none", qemu]


EXEC = Path(__file__).resolve().parent / "arch-exec"


def _binfmt(name: str) -> tuple:
    """(magic, mask) for ARCH name's static executables, in binfmt_misc's
    \\x notation: ELF, class, little-endian, version 1, ET_EXEC or ET_DYN,
    e_machine (the same shape as qemu-user-static's /usr/share/binfmts
    entries; made here because Debian has none for i386 on amd64)."""
    machine, cls = ARCHES[name][0], ARCHES[name][1]
    magic = b"\x7fELF" + bytes([cls, 1, 1]) + bytes(9) + b"\x02\x00" + machine.to_bytes(2, "little")
    mask = b"\xff" * 7 + b"\x00" + b"\xff" * 8 + b"\xfe\xff\xff\xff"
    return tuple("".join("\\x%02x" % c for c in b) for b in (magic, mask))


def isolated(binary) -> list:
    """The command prefix for a binary run inside the item's namespaces:
    runner/arch-exec registers qemu-user in a private binfmt_misc there,
    so the probe can exec binaries of its own architecture; [] for a
    native binary."""
    prefix = emulator(binary)
    if not prefix:
        return []
    magic, mask = _binfmt(of(binary))
    if not magic:
        return prefix
    return [str(EXEC), prefix[-1], magic, mask]


def _exec_mode(binary, isolate) -> str:
    """How items exec this binary: through a binfmt_misc registration in
    their own namespace, or as `qemu PROBE` (then a probe cannot exec a
    binary of its own architecture)."""
    prefix = isolated(binary) if isolate else []
    if len(prefix) > 1:
        try:
            out = subprocess.run([str(isolate), "--"] + prefix +
                                 ["/bin/cat", "/proc/sys/fs/binfmt_misc/sockprobe"],
                                 capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
            if b"enabled" in out.stdout:
                return "binfmt_misc in the item's user namespace"
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "qemu wrapper (no binfmt_misc: a probe cannot exec its own binary)"


def environment(build: Path, isolate=None) -> dict:
    """environment.arch (and .emulator, .arch_exec) for the report of a run
    of build/."""
    probes = sorted((build / "probes").glob("*")) if (build / "probes").is_dir() else []
    name = of(probes[0]) if probes else None
    if name is None:
        return {"arch": platform.machine(), "emulator": None}
    qemu = shutil.which(ARCHES[name][2])
    version = ""
    if qemu:
        try:
            out = subprocess.run([qemu, "--version"], capture_output=True, timeout=10,
                                 stdin=subprocess.DEVNULL).stdout.decode("utf-8", "replace")
            version = out.splitlines()[0].split("version", 1)[-1].strip() if out else ""
        except (OSError, subprocess.TimeoutExpired):
            pass
    return {"arch": name, "arch_exec": _exec_mode(probes[0], isolate) if qemu else None,
            "emulator": ("%s %s" % (os.path.basename(qemu or ARCHES[name][2]),
                                                  version)).strip()}
