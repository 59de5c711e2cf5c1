"""The kernel matrix (`make check-kernels`): the suite on every target the
registry marks `kernels` (runner/targets/registry.py: the host, UML, QEMU
with Debian's 6.1 and 6.12, ...), each run its own process (pytest runs
once per process), then one comparison page.

The runs go side by side, longest first (from the last matrix's times,
kept in the cache), as many at once as cores and memory allow (`--jobs`,
make's JOBS=N): a TCG guest or UML keeps about one core busy and each
waits on its boot, so up to twice the cores. Output stays one line per
change of state: a run started, its guest's notices, a run done with its
verdicts. Ctrl-C or SIGTERM stop every running step (each kills its guest
and writes its partial report), start no other, then stop the matrix.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import compare, config, discover, kernels, proc
from .errors import UsageError
from .progress import duration, step_times
from .targets import registry

ROOT = discover.ROOT
# (label, runner check arguments) of each run, in the registry's order
RUNS = [(e.label, config.command_line(e.options)) for e in registry.kernels()]
TIMES = kernels.CACHE.parent / "kernels-times.json"
GUESS = {e.label: e.seconds for e in registry.kernels()}


class MatrixError(UsageError):
    pass


# Memory each run needs (MiB, what the VM is given plus the runner), so
# the matrix never starts more guests than the machine can hold.
MEMORY_MB = {e.label: e.memory_mb for e in registry.kernels()}


def default_jobs(cores: int | None = None, available_mb: int | None = None) -> int:
    """How many runs at once: the host run and every guest (UML and a TCG
    QEMU each keep about one core busy) fill the cores and wait for one
    another's boots, so up to twice the cores, as many as memory holds."""
    cores = cores or os.cpu_count() or 1
    if available_mb is None:
        available_mb = _available_mb()
    jobs, need = 0, 0
    for name, _ in sorted(RUNS, key=lambda r: -MEMORY_MB.get(r[0], 500)):
        need += MEMORY_MB.get(name, 500)
        if jobs and need > available_mb:
            break
        jobs += 1
    return max(1, min(jobs, 2 * cores, len(RUNS)))


def _available_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1024


def run(a) -> int:
    """Every step of the matrix, up to `jobs` at once (longest first, from
    the last matrix's times); one line when a step starts and one when it
    ends. Ctrl-C or SIGTERM: passed to every running step (each stops its
    guest and writes its partial report), no new step starts, then up."""
    times = _times()
    registry.install(sorted({p for e in registry.kernels() for p in e.packages}))
    jobs = a.jobs or default_jobs()
    order = sorted(RUNS, key=lambda r: -times.get(r[0], 0))
    number = {name: n for n, (name, _) in enumerate(RUNS, 1)}
    paths, failed, took = {}, [], {}
    started_all = time.time()
    print("matrix: %d runs, %d at a time; about %s" % (
        len(RUNS), jobs, duration(_estimate(order, times, jobs))), flush=True)
    waiting, running = list(order), {}
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                name, extra = waiting.pop(0)
                print("[%d/%d] %s: started" % (number[name], len(RUNS), name), flush=True)
                with proc.hold_signals() as late:  # a step started is a step known
                    running[name] = (time.time(), start_check(
                        ["--reports", a.reports, "--timeout", str(a.timeout)] + extra,
                        relay="[%d/%d] %s: " % (number[name], len(RUNS), name)))
                if late:
                    e = KeyboardInterrupt()
                    e.signum = late[0]
                    raise e
            for name, (started, h) in list(running.items()):
                if h.proc.poll() is None:
                    continue
                r, path = h.result()
                del running[name]
                took[name] = time.time() - started
                summary = [l for l in r.stdout.splitlines() if l.startswith("verdicts:")]
                print("[%d/%d] %s: done in %.1fs  %s" % (
                    number[name], len(RUNS), name, took[name],
                    summary[0] if summary else (_last_line(r) or "no report")), flush=True)
                if path:
                    paths[name] = str(path)
                else:
                    failed.append(name)
            if running:
                time.sleep(0.1)  # the matrix watching its steps, not a probe waiting
    except BaseException as e:  # Ctrl-C, SIGTERM, or a bug here: no step outlives the matrix
        sig = getattr(e, "signum", signal.SIGINT if isinstance(e, KeyboardInterrupt)
                      else signal.SIGTERM)
        stop_all([h for _, h in running.values()], sig)
        raise
    _times(took)
    print("matrix wall time: %s" % duration(time.time() - started_all))
    paths = [paths[r[0]] for r in RUNS if r[0] in paths]
    if len(paths) < 2:
        raise MatrixError("fewer than two runs produced a report (%s failed)" % ", ".join(failed))
    text, differ, d = compare.compare(paths, Path(a.reports))
    sys.stdout.write(text)
    print("comparison page: %s" % (d / "compare.html"))
    return 1 if failed else 0


def _estimate(order, times, jobs) -> float:
    """The matrix's wall time if each step takes what it took last time
    (side by side, so contention is already in those times): the fullest
    of `jobs` slots."""
    slots = [0.0] * max(1, jobs)
    for name, _ in order:
        slots[slots.index(min(slots))] += times.get(name, 0)
    return max(slots)


def _last_line(r) -> str:
    lines = [l for l in (r.stdout + r.stderr).strip().splitlines() if l.strip()]
    return lines[-1].strip() if lines else ""


def _times(took: dict | None = None) -> dict:
    return step_times(TIMES, GUESS, took)


class Check:
    """A running `runner check` child: its process, its output so far."""

    def __init__(self, proc, readers, out, err):
        self.proc, self.readers, self.out, self.err = proc, readers, out, err

    def result(self) -> tuple:
        self.proc.wait()
        for t in self.readers:
            t.join()
        r = subprocess.CompletedProcess(self.proc.args, self.proc.returncode,
                                        "".join(self.out), "".join(self.err))
        m = re.search(r"^report: (\S+)", r.stdout, re.M)
        return r, (ROOT / m.group(1) / "report.json") if m else None


def start_check(args: list, relay=False) -> Check:
    """Start `runner check ARGS` as a child process (pytest runs once per
    process). relay: pass its notices (stdout lines "sockprobe: ...") on
    while it runs, and its progress (stderr) too when relay is True; a
    string relays notices only, each prefixed with it (steps running side
    by side: one line per change of state, no interleaved progress)."""
    p = subprocess.Popen([sys.executable, "-m", "runner", "check", "-q"] + args, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = [], []
    prefix = relay if isinstance(relay, str) else "  "
    lock = _RELAY_LOCK

    def drain(stream, keep, show):
        for line in stream:
            keep.append(line)
            if relay and show(line):
                with lock:
                    sys.stderr.write(prefix + (line[len("sockprobe: "):]
                                               if isinstance(relay, str) and
                                               line.startswith("sockprobe: ") else line))
                    sys.stderr.flush()

    notices = lambda l: l.startswith("sockprobe: ") and not l.startswith("sockprobe: error")
    progress = (lambda l: False) if isinstance(relay, str) else \
        (lambda l: not l.startswith("sockprobe: error"))
    readers = [threading.Thread(target=drain, args=(p.stdout, out, notices), daemon=True),
               threading.Thread(target=drain, args=(p.stderr, err, progress), daemon=True)]
    for t in readers:
        t.start()
    return Check(p, readers, out, err)


_RELAY_LOCK = threading.Lock()


def stop_all(checks: list, sig: int) -> None:
    """Ctrl-C or SIGTERM reached the matrix: pass it to every running
    child, which stops its guest and writes its partial report; wait for
    them (bounded), SIGKILL what is left (its VM dies with it,
    PR_SET_PDEATHSIG)."""
    with proc.hold_signals():
        if sig == signal.SIGINT:  # a terminal's Ctrl-C reaches the whole group
            end = time.monotonic() + 3
            while time.monotonic() < end and any(c.proc.poll() is None for c in checks):
                time.sleep(0.05)
        for c in checks:
            if c.proc.poll() is None:
                c.proc.send_signal(sig)
        end = time.monotonic() + 30
        for c in checks:
            try:
                c.proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()
        for c in checks:
            for t in c.readers:
                t.join(5)


def run_check(args: list, relay: bool = False) -> tuple:
    """`runner check ARGS` as a child process; returns its
    CompletedProcess and its report.json, or None. Ctrl-C or SIGTERM here
    are passed to the child, which stops and writes its partial report;
    then they go on up."""
    c = start_check(args, relay)
    try:
        c.proc.wait()
    except KeyboardInterrupt as e:
        stop_all([c], getattr(e, "signum", signal.SIGINT))
        raise
    return c.result()
