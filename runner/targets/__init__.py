"""Targets: the ways sockprobe runs the same probes.

Every target runs a selection of items and yields the same result records
(runner/records.py); one finish step (runner/finish.py) turns them into
the report, the terminal lines and the exit status. Which targets exist
is runner/targets/registry.py, read by the command line, `make
check-kernels` and `make matrix`:

  host   (host.py)    this machine's kernel: pytest schedules one item per
                      probe test and family, each run under sp-isolate
                      (runner/execute.py); PRELOAD, WRAP, LIBC, ARCH, HOST
  uml    (uml.py)     User-mode Linux, the static probes on a hostfs root
  qemu   (qemu.py)    a kernel image booted with QEMU (KVM, or TCG when KVM
                      is missing or prints nothing within a short bound);
                      ARCH=aarch64: Debian's arm64 kernel
  ssh    (ssh.py)     a remote machine: the bundle of `make dist` unpacked
                      there, its POSIX sh runner streaming back
  bundle (runner/dist.py)  a stream the bundle's runner wrote anywhere,
                      brought back and ingested

uml, qemu and ssh are StreamTargets (stream.py): they start something
(a VM, a connection, a sandbox) that runs the POSIX sh runner
(runner/sh/run) on the static probes and writes the framed `@SP1` stream
into a file; StreamTarget.run() does the rest (item count, progress,
bounds, Ctrl-C/SIGTERM, the stream parsed by protocol.parse_framed,
partial reports). A new target is one module with a Target (or
StreamTarget) subclass plus one registry entry; /work/wt/runner-API.md and
README ("Layout") say how.

The options a target accepts or refuses (the one rule): the options in
TARGET_OPTIONS change how the probes run on this machine (a library
loaded into them, a command around them, another libc, another CPU, no
namespaces). A target lists in `accepts` those it takes; any other one,
when given, is refused with one line naming the option, what selected
the target and the target's `refusal`. Rules between options a target
does take are its own check().
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError

# option name -> how the user names it (the Makefile variable)
TARGET_OPTIONS = {"preload": "PRELOAD", "wrap": "WRAP", "libc": "LIBC=musl", "arch": "ARCH",
                  "host": "HOST=1"}


def spelled(cfg, option: str) -> str:
    """A target option as the user wrote it: ARCH=aarch64, HOST=1."""
    name = TARGET_OPTIONS[option].split("=")[0]
    v = getattr(cfg, option)
    return "%s=%s" % (name, 1 if v is True else v)


def given(cfg, option: str) -> bool:
    """Is a target option set to something other than its default?"""
    v = getattr(cfg, option)
    return bool(v) and not (option == "libc" and v == "glibc")


class Target:
    """A way of running. Subclasses set the class attributes and fill in
    the methods; registry.Entry says how one is built and named."""
    accepts: frozenset = frozenset()   # names from TARGET_OPTIONS this target takes
    refusal = ""                       # why it takes no other: "the probes run in a guest kernel"

    def __init__(self, entry=None):
        self.entry = entry             # the registry entry that built it (None in tests)

    @classmethod
    def from_config(cls, entry, cfg):
        """Build the target an entry names for a run configuration."""
        t = cls(**dict(entry.kwargs))
        t.entry = entry
        return t

    def label(self) -> str:
        """How messages and reports name the system: "uml", "qemu 6.1"."""
        return self.entry.label if self.entry else "?"

    def selected_by(self, cfg) -> str:
        """What chose this target, as the user wrote it: "KERNEL=uml"."""
        return "KERNEL=%s" % cfg.kernel if cfg.kernel else self.label()

    def check_options(self, cfg) -> None:
        """The one rule (module doc), then the target's own check()."""
        for opt in TARGET_OPTIONS:
            if given(cfg, opt) and opt not in self.accepts:
                raise UsageError("%s does not combine with %s (%s)" % (
                    spelled(cfg, opt), self.selected_by(cfg), self.refusal))
        self.check(cfg)

    def check(self, cfg) -> None:
        """Rules between the options this target takes (UsageError)."""

    def packages(self, cfg) -> tuple:
        """Debian packages this run needs beyond the base ones (the
        command line installs them, or says how, before prepare())."""
        return tuple(self.entry.packages) if self.entry else ()

    def build_dir(self, cfg) -> Path:
        """Where the probes and sp-isolate it runs are built."""
        raise NotImplementedError

    def prepare(self, say) -> None:
        """Fetch or check what running needs (may raise GuestError)."""

    def run(self, cfg, say) -> int:
        """Run the selection (cfg.tests: probe, probe/test, item words),
        hand the result records to runner/finish.py; the exit status."""
        raise NotImplementedError

    def environment(self) -> dict:
        """What the report's environment says about the target."""
        return {"guest": self.label()}
