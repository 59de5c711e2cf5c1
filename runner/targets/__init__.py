"""Targets: the ways sockprobe runs the same probes.

Every target turns a selection of items into the one `@SP1` protocol
stream (runner/protocol.py parses it) and hands the results to one place
that writes reports (report.publish):

  host   (host.py)  this machine's kernel: pytest and the plugin run each
                    item under build/sp-isolate (runner/execute.py)
  uml    (uml.py)   User-mode Linux, the static probes on a hostfs root
  qemu   (qemu.py)  a kernel image booted with QEMU (KVM, or TCG when KVM
                    is missing or prints nothing within a short bound)
  ssh    (ssh.py)   a remote machine: the bundle of `make dist` (runner/dist.py)
                    unpacked into a mktemp -d directory there, its POSIX sh
                    runner (runner/guest/run, also the guest init's) streaming
                    back over the connection

A guest target is a Target: it boots, runs runner/guest/init (which takes
the tests from each probe's own --list) and leaves the stream in a file;
vm.run() does the rest (item count, progress, bounds, Ctrl-C/SIGTERM,
partial reports). New targets (a wrapper, another architecture, ssh, a
bundle) are new modules with the same few methods.
"""
from __future__ import annotations

from pathlib import Path


class Target:
    """A guest target. Subclasses set kind and fill in the methods."""
    kind = "?"            # "uml", "qemu": names the work directory
    accel = None          # the accelerator in use ("KVM", "TCG"), None if none applies
    boot_bound_s = 60.0   # the guest must print within this after it starts

    def __init__(self):
        self.stream_path: Path | None = None   # where the stream appears (set by boot)
        self.console: Path | None = None       # the kernel's console log (set by boot)

    def label(self) -> str:
        """How messages and reports name the target: "uml", "qemu 6.1"."""
        return self.kind

    def prepare(self, say) -> None:
        """Fetch or check what booting needs (may raise guest.GuestError)."""

    def describe(self) -> str:
        """The one line said before booting; names the accelerator only
        where one is used."""
        return "booting %s%s" % (self.label(), " (%s)" % self.accel if self.accel else "")

    def boot(self, static: Path, work: Path, tests: list, item_timeout: float,
             bound_s: float, on_stream, say) -> str:
        """Boot, run the selection, return how the VM ended (see
        guest._run_bounded). Sets stream_path and console before the VM
        starts, so an interrupted run can still be read."""
        raise NotImplementedError

    def environment(self) -> dict:
        """What the report's environment says about the target."""
        return {"guest": self.label()}
