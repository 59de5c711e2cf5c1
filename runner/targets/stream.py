"""StreamTarget: the common run of every target that runs the POSIX sh
runner (runner/sh/run) somewhere and reads back its framed `@SP1` stream:
guest kernels (uml.py, qemu.py), a remote over ssh (ssh.py), and any
launcher of the static bundle (a sandbox such as gVisor's runsc).

A subclass fills in start(): start the VM, connection or sandbox in a
bounded way (runner/proc.py: run_bounded) with the stream going into a
file, and say how it ended. run() does the rest: count the selection,
progress, the whole run's bound, Ctrl-C and SIGTERM, the stream parsed
(protocol.parse_framed), kernel health, the one finish step
(runner/finish.py), partial reports.
"""
from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path

from .. import discover, finish, protocol, proc
from ..errors import GuestError, UsageError
from ..progress import Progress
from . import Target


def count_items(static: Path, tests: list) -> int:
    """How many items the run will have: each selected probe's --list,
    read on the host (the static probes run here too)."""
    n = 0
    for p in sorted((static / "probes").iterdir()):
        if not tests or p.name in tests:
            n += len(discover.items_of(p))
        elif any(t.startswith(p.name + "/") for t in tests):  # probe/test
            n += sum(1 for i in discover.items_of(p) if "%s/%s" % (p.name, i.test) in tests)
    return n


def default_bound(target, items: int, item_timeout: float) -> float:
    """The run's bound when none is given: the boot bound plus every item
    running out its own timeout."""
    return target.boot_bound_s + items * item_timeout


def describe_failure(how: str, console: Path, boot_bound_s: float | None = None) -> str:
    """Why a guest run ended early, from how it ended and its console."""
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


def _say(line: str) -> None:
    print(line, flush=True)
    sys.stdout.flush()


class StreamTarget(Target):
    """A target whose items run in the sh runner; the stream comes back."""
    kind = "?"            # names the work directory with the label
    accel = None          # the accelerator in use ("KVM", "TCG"), None if none applies
    boot_bound_s = 60.0   # the first byte of stream or console within this
    prefix = "guest"      # how the line saying why a run ended early starts
    cut_short = protocol.CUT_SHORT  # the message of the item a run stopped in
    refusal = "the static probes run in the guest kernel as they are"
    isolation_label = "guest"  # the report's environment.isolation: "guest (namespaces)"

    def __init__(self, entry=None):
        super().__init__(entry)
        self.stream_path: Path | None = None   # where the stream appears (set by start)
        self.console: Path | None = None       # the console or launcher log (set by start)

    def label(self) -> str:
        return self.entry.label if self.entry else self.kind

    def describe(self) -> str:
        """The one line said before starting; names the accelerator only
        where one is used."""
        return "booting %s%s" % (self.label(), " (%s)" % self.accel if self.accel else "")

    def build_dir(self, cfg) -> Path:
        return Path(cfg.build) / (cfg.arch or "static")

    def start(self, static: Path, work: Path, tests: list, item_timeout: float,
              bound_s: float, on_stream, say) -> str:
        """Start it, run the selection, return how it ended (see
        proc.run_bounded). Sets stream_path and console before anything
        starts, so an interrupted run can still be read."""
        raise NotImplementedError

    def describe_failure(self, how: str, console: Path, boot_bound_s=None) -> str:
        return describe_failure(how, console, boot_bound_s)

    def selection(self, cfg, static: Path) -> list:
        """The TEST words as the sh runner takes them (probe, probe/test)."""
        if not (static / "sp-isolate").exists():
            raise UsageError("the static probes are not built: run `make check KERNEL=%s`"
                             % cfg.kernel)
        known = sorted(p.name for p in (static / "probes").iterdir())
        for t in cfg.tests:
            if t.split("/")[0] not in known:
                raise UsageError("unknown probe '%s' (probes: %s)" % (t.split("/")[0],
                                                                       ", ".join(known)))
        return sorted({t.split("/")[0] for t in cfg.tests})

    def run(self, cfg, say=_say, work: Path | None = None) -> int:
        static = self.build_dir(cfg)
        selection = self.selection(cfg, static)
        self.prepare(say)
        items = count_items(static, selection)
        bound = cfg.guest_timeout or default_bound(self, items, cfg.timeout)
        # One directory per target ("qemu-6.1", "qemu-6.12"): the kernel
        # matrix runs them side by side.
        work = work or discover.BUILD / "guest" / self.label().replace(" ", "-").replace("/", "_")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        started = time.time()
        say("sockprobe: %s..." % self.describe())
        prog = Progress(self.label(), items)
        seen = {"n": 0, "tail": b""}

        def on_stream(data: bytes) -> None:
            pat = b"@SP1 item "
            text = seen["tail"] + data  # an item line may be split across reads
            seen["n"] += text.count(pat) - seen["tail"].count(pat)
            seen["tail"] = text[-len(pat):]
            if seen["n"]:
                prog.update(seen["n"] - 1, "running items")
            else:
                prog.update(0, "booting")

        stopped = None
        try:
            prog.update(0, "booting")
            how = self.start(static, work, selection, cfg.timeout, bound, on_stream, say)
        except KeyboardInterrupt as e:
            stopped = getattr(e, "signum", signal.SIGINT)
            how = "interrupted"
        finally:
            prog.close()
        with proc.hold_signals() as late:
            rc = self._finish(cfg, work, started, bound, how, stopped, say)
        if late and not stopped:
            print("sockprobe: interrupted by %s while writing the report"
                  % signal.Signals(late[0]).name)
            return 128 + late[0]
        return rc

    def _finish(self, cfg, work, started, bound, how, stopped, say) -> int:
        """The stream so far -> the report; the exit status."""
        text = ""
        if self.stream_path is not None and self.stream_path.exists():
            text = self.stream_path.read_text(errors="replace")
        parsed = protocol.parse_framed(text, cfg.timeout, None if stopped else self.cut_short)
        failure = None if stopped else self.describe_failure(
            how, self.console or work / "console.log",
            self.boot_bound_s if how == "silent" else None)
        results = parsed["results"]
        if not results:
            if stopped:
                say("sockprobe: interrupted by %s before the guest ran an item; no report"
                    % signal.Signals(stopped).name)
                return 128 + stopped
            raise GuestError(failure)
        env = finish.stream_environment(parsed)
        env.update(self.environment())
        env["preload"] = None
        modes = finish.isolation_modes(results)
        env["isolation"] = "%s (%s)" % (self.isolation_label, ",".join(modes))
        env["item_isolation"] = modes
        env["timeout_s"] = cfg.timeout
        env["guest_timeout_s"] = bound
        finish.kernel_health(results, env, parsed.get("health", []))
        doc, d = finish.complete(results, env, Path(cfg.reports), expectations=cfg.expect,
                                 partial=not parsed["done"], started=started,
                                 finished=time.time())
        if stopped:
            print("sockprobe: interrupted by %s: the guest was stopped; partial report written"
                  % signal.Signals(stopped).name)
        elif not parsed["done"]:
            print("%s: %s" % (self.prefix, failure))
        print("\n".join(finish.lines(doc, d)))
        print("wall time: %.1fs" % (time.time() - started))
        if stopped:
            return 128 + stopped
        return finish.status(doc)
