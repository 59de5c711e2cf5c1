"""The kernel matrix (`make check-kernels`): the suite on the host, under
UML, and under QEMU with Debian's 6.1 and 6.12, each run its own process
(pytest runs once per process), then one comparison page.

Long work: each step says what it runs and roughly how long the matrix
has left (from the last matrix's times, kept in the cache); the guests'
own notices and progress are passed on. Ctrl-C or SIGTERM stop the
current run (it kills its guest and writes its partial report), then the
matrix.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import compare, discover, guest
from .progress import duration

ROOT = discover.ROOT
RUNS = [("host", []), ("uml", ["--kernel", "uml"]), ("qemu 6.1", ["--kernel", "6.1"]),
        ("qemu 6.12", ["--kernel", "6.12"])]
TIMES = guest.CACHE.parent / "kernels-times.json"
GUESS = {"host": 5, "uml": 15, "qemu 6.1": 30, "qemu 6.12": 30}


class MatrixError(Exception):
    pass


def run(a) -> int:
    times = _times()
    paths, failed, took = [], [], {}
    started_all = time.time()
    for n, (name, extra) in enumerate(RUNS, 1):
        left = sum(times.get(r[0], 0) for r in RUNS[n - 1:])
        print("[%d/%d] %s; about %s left for the matrix" % (n, len(RUNS), name, duration(left)),
              flush=True)
        started = time.time()
        r, path = run_check(["--reports", a.reports, "--timeout", str(a.timeout)] + extra,
                            relay=True)
        took[name] = time.time() - started
        summary = [l for l in r.stdout.splitlines() if l.startswith("verdicts:")]
        print("%-10s %5.1fs  %s" % (name, took[name],
                                     summary[0] if summary else (r.stderr.strip() or "no report")),
              flush=True)
        if path:
            paths.append(str(path))
        else:
            failed.append(name)
    _times(took)
    print("matrix wall time: %s" % duration(time.time() - started_all))
    if len(paths) < 2:
        raise MatrixError("fewer than two runs produced a report (%s failed)" % ", ".join(failed))
    text, differ, d = compare.compare(paths, Path(a.reports))
    sys.stdout.write(text)
    print("comparison page: %s" % (d / "compare.html"))
    return 1 if failed else 0


def _times(took: dict | None = None) -> dict:
    """Seconds each step took last time (a rough guide for the next):
    read, or given took, written."""
    if took is None:
        try:
            return dict(GUESS, **{k: float(v) for k, v in json.loads(TIMES.read_text()).items()})
        except (OSError, ValueError, AttributeError, TypeError):
            return dict(GUESS)
    try:
        TIMES.parent.mkdir(parents=True, exist_ok=True)
        TIMES.write_text(json.dumps(took) + "\n")
    except OSError:
        pass  # only a guide
    return took


def run_check(args: list, relay: bool = False) -> tuple:
    """`runner check ARGS` as a child process (pytest runs once per
    process); returns its CompletedProcess and its report.json, or None.
    relay: pass its notices (stdout lines "sockprobe: ...") and progress
    (stderr) on while it runs. Ctrl-C or SIGTERM here are passed to the
    child, which stops and writes its partial report; then they go on up."""
    p = subprocess.Popen([sys.executable, "-m", "runner", "check", "-q"] + args, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = [], []

    def drain(stream, keep, show):
        for line in stream:
            keep.append(line)
            if relay and show(line):
                sys.stderr.write("  " + line)
                sys.stderr.flush()

    readers = [threading.Thread(target=drain, args=(p.stdout, out, lambda l: l.startswith(
                   "sockprobe: ") and not l.startswith("sockprobe: error")), daemon=True),
               threading.Thread(target=drain, args=(p.stderr, err, lambda l: not l.startswith(
                   "sockprobe: error")), daemon=True)]
    for t in readers:
        t.start()
    try:
        p.wait()
    except KeyboardInterrupt as e:
        sig = getattr(e, "signum", signal.SIGINT)
        try:
            if sig == signal.SIGINT:
                try:  # a terminal's Ctrl-C reaches the whole group: it may be stopping already
                    p.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    pass
            if p.poll() is None:
                p.send_signal(sig)
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()  # its VM dies with it (PR_SET_PDEATHSIG)
            p.wait()
        finally:
            for t in readers:
                t.join(5)
        raise
    for t in readers:
        t.join()
    r = subprocess.CompletedProcess(p.args, p.returncode, "".join(out), "".join(err))
    m = re.search(r"^report: (\S+)", r.stdout, re.M)
    return r, (ROOT / m.group(1) / "report.json") if m else None


