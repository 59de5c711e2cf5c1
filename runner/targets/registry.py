"""The one registry of targets: every system sockprobe runs, with what
builds it, what it needs, what it costs. The command line chooses from it
(KERNEL=, TARGET=), `make check-kernels` runs the entries marked kernels,
`make matrix` those marked matrix (each with expectations/<name>.tsv),
and runner/matrix.py packs runs by memory and time from it.

A new target is one module in runner/targets/ and one Entry here.
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

ROOT = Path(__file__).resolve().parent.parent.parent
BUILD = ROOT / "build"
SW_LIB = "/usr/lib/x86_64-linux-gnu/libsocket_wrapper.so"
IMAGE = "<kernel image path>"   # options["kernel"] of the entry a KERNEL=/path picks


@dataclass(frozen=True)
class Entry:
    name: str          # expectations/<name>.tsv, the matrix column, cache keys
    label: str         # how runs, reports and pages name the system: "qemu 6.1"
    target: str        # "module:Class" under runner.targets (imported when chosen)
    options: dict = field(default_factory=dict)   # the run options that make it: {"kernel": "6.1"}
    kwargs: dict = field(default_factory=dict)    # constructor arguments of the class
    packages: tuple = ()   # Debian packages it needs beyond the base (installed when chosen)
    tools: tuple = ()      # commands or files that must exist for it to run here
    build: str = "build"   # its probes: build/, build/static, build/musl, build/ARCH
    env: dict = field(default_factory=dict)  # extra environment of its runs (None: a fresh temp dir)
    memory_mb: int = 300   # what a run needs (the VM plus the runner)
    seconds: float = 10.0  # a first guess of a run's wall time (measured times replace it)
    kernels: bool = False  # a column of `make check-kernels`
    matrix: bool = False   # a column of `make matrix` (docs/matrix.md)

    def cls(self):
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module("runner.targets." + module), name)

    def make(self, cfg):
        """The target object for a run configuration."""
        return self.cls().from_config(self, cfg)

    def why_not(self) -> str | None:
        """Why this entry cannot run on this machine (None: it can)."""
        if self.build != "build" and not (BUILD / self.build / "sp-isolate").exists():
            return "%s probes not built (make %s)" % (
                self.build, self.build if self.build in ("static", "musl") else
                "cross-" + self.build)
        miss = [t for t in self.tools if not (shutil.which(t) or Path(t).exists())]
        return ("%s not installed" % ", ".join(miss)) if miss else None


QEMU_X86 = ("busybox-static", "qemu-system-x86")
ENTRIES = (
    Entry("host", "host", "host:Host", memory_mb=300, seconds=5, kernels=True, matrix=True),
    Entry("uml", "uml", "uml:Uml", {"kernel": "uml"}, packages=("busybox-static", "user-mode-linux"),
          tools=("linux",), build="static", memory_mb=400, seconds=20, kernels=True, matrix=True),
    Entry("qemu-6.1", "qemu 6.1", "qemu:Qemu", {"kernel": "6.1"}, {"series": "6.1"},
          packages=QEMU_X86, tools=("qemu-system-x86_64",), build="static", memory_mb=700,
          seconds=30, kernels=True, matrix=True),
    Entry("qemu-6.12", "qemu 6.12", "qemu:Qemu", {"kernel": "6.12"}, {"series": "6.12"},
          packages=QEMU_X86, tools=("qemu-system-x86_64",), build="static", memory_mb=700,
          seconds=40, kernels=True, matrix=True),
    Entry("qemu-image", "qemu", "qemu:Qemu", {"kernel": IMAGE}, packages=QEMU_X86,
          tools=("qemu-system-x86_64",), build="static", memory_mb=700, seconds=30),
    Entry("musl", "musl", "host:Host", {"libc": "musl"}, packages=("musl-tools",), build="musl",
          seconds=5, matrix=True),
    Entry("socket_wrapper", "socket_wrapper", "host:Host", {"preload": SW_LIB},
          packages=("libsocket-wrapper",), tools=(SW_LIB,), env={"SOCKET_WRAPPER_DIR": None},
          seconds=15, matrix=True),
    Entry("proot", "proot", "host:Host", {"wrap": "proot"}, packages=("proot",), tools=("proot",),
          seconds=5, matrix=True),
    Entry("valgrind", "valgrind", "host:Host", {"wrap": "valgrind --tool=none"},
          packages=("valgrind",), tools=("valgrind",), seconds=30, matrix=True),
    Entry("qemu-user-aarch64", "qemu-user aarch64", "host:Host", {"arch": "aarch64"},
          packages=("gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "qemu-user-static"),
          tools=("qemu-aarch64-static",), build="aarch64", seconds=15, matrix=True),
    Entry("gvisor", "gvisor", "gvisor:Gvisor", {"kernel": "gvisor"}, {"network": "netstack"},
          packages=("runsc", "busybox-static"), tools=("runsc",), build="static", memory_mb=600,
          seconds=45, matrix=True),
    Entry("gvisor-hostinet", "gvisor-hostinet", "gvisor:Gvisor", {"kernel": "gvisor-hostinet"},
          {"network": "hostinet"}, packages=("runsc", "busybox-static"), tools=("runsc", "unshare"),
          build="static", memory_mb=600, seconds=60, matrix=True),
    Entry("ssh", "ssh", "ssh:Ssh", {"target": "ssh://"}, packages=("openssh-client",),
          build="static", seconds=30),
    Entry("bundle", "bundle", "bundle:Bundle", build="static", seconds=1),   # make ingest
)


def entry(name: str) -> Entry:
    for e in ENTRIES:
        if e.name == name:
            return e
    raise KeyError(name)


def kernel_names() -> list:
    """The KERNEL= values that name a target (a kernel image path is the other kind)."""
    return [e.options["kernel"] for e in ENTRIES if e.options.get("kernel", IMAGE) != IMAGE]


def kernels() -> list:
    return [e for e in ENTRIES if e.kernels]


def matrix() -> list:
    return [e for e in ENTRIES if e.matrix]


def choose(cfg) -> Entry:
    """The entry a run configuration selects: TARGET= a remote, KERNEL= a
    guest (by name or a kernel image path), otherwise this machine."""
    if cfg.target:
        for e in ENTRIES:
            if e.options.get("target") and cfg.target.startswith(e.options["target"]):
                return e
        raise UsageError("TARGET must be %s (got '%s')" % (" or ".join(
            "%suser@host[:port]" % e.options["target"] for e in ENTRIES
            if e.options.get("target")), cfg.target))
    if cfg.kernel:
        for e in ENTRIES:
            if e.options.get("kernel") == cfg.kernel:
                return e
        if os.path.isfile(cfg.kernel):
            return next(e for e in ENTRIES if e.options.get("kernel") == IMAGE)
        raise UsageError("KERNEL must be %s or the path of a kernel image (got '%s')"
                         % (", ".join(kernel_names()), cfg.kernel))
    return entry("host")


DEPS = ROOT / "scripts" / "deps.sh"


def install(packages) -> None:
    """Make sure packages are installed (scripts/deps.sh: installs them as
    root with apt-get, otherwise one line saying what to install)."""
    if not packages:
        return
    r = subprocess.run([str(DEPS)] + list(packages), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    if r.returncode != 0:
        raise UsageError((lines[-1] if lines else "scripts/deps.sh failed").replace(
            "sockprobe: ", "", 1))
    for l in lines:  # "installing Debian packages: ..."
        print(l, flush=True)
