"""A kernel image booted with QEMU (qemu-system-x86_64): Debian's cloud
kernels (6.1, 6.12, fetched on first use) or any bzImage. The root is an
initramfs; the stream comes out of the second serial port.

KVM is used when /dev/kvm is there, but never trusted blindly: on some
machines /dev/kvm exists and a guest under it never runs. A KVM guest
that prints nothing within KVM_BOOT_S is abandoned for TCG, the run says
so in one line, and the verdict is kept for this boot of the machine
(~/.cache/sockprobe/kvm.json), so later runs go straight to TCG."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .. import kernels, proc, rootfs
from ..errors import GuestError, UsageError
from . import registry
from .stream import StreamTarget

KVM_BOOT_S = 15.0
KVM_CACHE = kernels.CACHE.parent / "kvm.json"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def kvm_known_dead() -> bool:
    try:
        v = json.loads(KVM_CACHE.read_text())
    except (OSError, ValueError):
        return False
    return v.get("kvm") == "dead" and v.get("boot_id") == _boot_id() != ""


def remember_kvm_dead() -> None:
    try:
        KVM_CACHE.parent.mkdir(parents=True, exist_ok=True)
        KVM_CACHE.write_text(json.dumps({"kvm": "dead", "boot_id": _boot_id()}) + "\n")
    except OSError:
        pass  # only a speed-up


_WAIT_PORT = """#!/bin/busybox sh
b=/bin/busybox
$b mkdir -p /proc /sys /dev
$b mount -t devtmpfs dev /dev
for m in /modules/*.ko; do $b insmod "$m" 2>/dev/null; done
i=0
while [ $i -lt 100 ] && ! ( : >/dev/vport0p1 ) 2>/dev/null; do $b sleep 0.1; i=$((i + 1)); done
$b umount /dev
exec /init.guest
"""


class Qemu(StreamTarget):
    kind = "qemu"
    accepts = frozenset({"arch"})   # ARCH=aarch64: Debian's arm64 kernel

    def __init__(self, series: str | None = None, image: Path | None = None,
                 arch: str | None = None):
        super().__init__()
        self.series, self.image = series, image
        self.accel, self.why = None, ""
        self.arch = arch   # ARCH=aarch64: Debian's arm64 kernel under qemu-system-aarch64 (TCG)

    @classmethod
    def from_config(cls, entry, cfg):
        image = Path(cfg.kernel).resolve() if entry.options.get("kernel") == registry.IMAGE \
            else None
        t = cls(series=entry.kwargs.get("series"), image=image, arch=cfg.arch)
        t.entry = entry
        return t

    def check(self, cfg) -> None:
        if cfg.arch and (cfg.arch != "aarch64" or self.series not in ("6.1", "6.12")):
            raise UsageError("ARCH=%s with KERNEL=%s is not supported: a guest kernel of another "
                             "architecture is KERNEL=6.1 or 6.12 with ARCH=aarch64"
                             % (cfg.arch, cfg.kernel))

    def packages(self, cfg) -> tuple:
        return ("busybox-static", "qemu-system-arm") if cfg.arch else super().packages(cfg)

    def label(self) -> str:
        return "qemu %s%s" % (self.series or self.image, " " + self.arch if self.arch else "")

    def prepare(self, say) -> None:
        if self.arch:
            return self._prepare_foreign()
        if not shutil.which("qemu-system-x86_64"):
            raise GuestError("QEMU is not installed (apt-get install qemu-system-x86)")
        if self.image is None:
            self.image = kernels.debian_kernel(self.series)
        self.kvm_dead_before = kvm_known_dead()
        usable = kvm_usable()
        self.accel = "KVM" if usable and not self.kvm_dead_before else "TCG"
        self.why = (": KVM printed nothing earlier on this boot"
                    if usable and self.kvm_dead_before else "")

    def describe(self) -> str:
        return "booting %s (%s, %s%s)" % (self.label(), Path(self.image).name, self.accel,
                                           self.why)

    def _prepare_foreign(self) -> None:
        from .. import debarch
        if not shutil.which("qemu-system-aarch64"):
            raise GuestError("qemu-system-aarch64 is not installed "
                                   "(apt-get install qemu-system-arm)")
        self.image, self.modules, self.busybox = debarch.kernel(self.arch, self.series)
        self.accel, self.why = "TCG", ""
        self.boot_bound_s = max(self.boot_bound_s, 120.0)  # an emulated CPU boots slowly
        try:  # Debian's dnsmasq of that architecture, for the DNS items
            self.dns_files, self.dns_why = debarch.dns_server(self.arch), None
        except GuestError as e:
            self.dns_files, self.dns_why = [], str(e)

    def start(self, static, work, tests, item_timeout, bound_s, on_stream, say) -> str:
        if self.arch:
            if self.dns_why:  # its DNS items then skip: no dnsmasq
                say("sockprobe: no fixture DNS server for the %s guest: %s" % (self.arch, self.dns_why))
            root = rootfs.build_root(work / "root", static, self.modules, self.dns_files)
            shutil.copy2(self.busybox, root / "bin" / "busybox")
            # The virtio serial port comes up after its module loads:
            # wait (bounded) until it opens, then the usual init.
            os.rename(root / "init", root / "init.guest")
            (root / "init").write_text(_WAIT_PORT)
            (root / "init").chmod(0o755)
            initrd = rootfs.write_cpio(root, work / "initrd.cpio")
            self.stream_path = work / "stream"
            self.console = work / "console.log"
            return self._run(initrd, work, tests, item_timeout, bound_s, on_stream)
        root = rootfs.build_root(work / "root", static)
        initrd = rootfs.write_cpio(root, work / "initrd.cpio")
        self.stream_path = work / "stream"
        self.console = work / "console.log"
        how = self._run(initrd, work, tests, item_timeout, bound_s, on_stream)
        if how == "silent" and self.accel == "KVM":
            remember_kvm_dead()
            say("sockprobe: KVM printed nothing within %g s: abandoned for TCG "
                "(remembered for this boot in %s)" % (KVM_BOOT_S, KVM_CACHE))
            self.accel = "TCG"
            how = self._run(initrd, work, tests, item_timeout, bound_s, on_stream)
        return how

    def _run(self, initrd, work, tests, item_timeout, bound_s, on_stream) -> str:
        for f in (self.stream_path, self.console):
            f.unlink(missing_ok=True)
        append = ("console=ttyS0 panic=-1 rdinit=/init quiet mitigations=off sockprobe.out=/dev/ttyS1 " +
                  " ".join(rootfs.init_args(item_timeout, tests)))
        cmd = ["qemu-system-x86_64", "-M", "pc", "-accel", self.accel.lower(), "-m", "512",
               "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot",
               "-kernel", str(self.image), "-initrd", str(initrd), "-append", append,
               "-serial", "file:%s" % self.console, "-serial", "file:%s" % self.stream_path]
        if self.arch:  # one PL011 UART on -M virt: the stream goes out a virtio serial port
            cmd = ["qemu-system-aarch64", "-M", "virt", "-cpu", "max", "-accel", "tcg",
                   "-m", "512", "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot",
                   "-kernel", str(self.image), "-initrd", str(initrd),
                   "-append", append.replace("console=ttyS0", "console=ttyAMA0")
                                    .replace("/dev/ttyS1", "/dev/vport0p1"),
                   "-serial", "file:%s" % self.console, "-device", "virtio-serial-device",
                   "-chardev", "file,id=sp,path=%s" % self.stream_path,
                   "-device", "virtserialport,chardev=sp,name=sockprobe"]
        bound = KVM_BOOT_S if self.accel == "KVM" else self.boot_bound_s
        return proc.run_bounded(cmd, work / "qemu.log", bound_s, guest_console=self.console,
                                stream=self.stream_path, boot_bound_s=bound,
                                on_stream=on_stream)

    def environment(self) -> dict:
        env = {"guest": self.label(), "guest_kernel_image": str(self.image),
               "guest_accel": (self.accel or "").lower()}
        if self.arch:
            env.update({"arch": self.arch, "emulator": "qemu-system-aarch64 (TCG)"})
        return env
