"""sockprobe's command line (python -m runner ...; `make check` calls it).

  check [options] [TEST ...]   run the suite (or some tests) and write reports
  list                         the tests, their families and catalogue IDs
  compare REPORT REPORT...     side-by-side verdicts and differing values
  mutate [FAULT ...]           the mutation campaign: every fault against the suite
  paths [REPORT]               per catalogue ID, the entry points its items went through
  dist                         the bundle: sockprobe-VERSION-ARCH.tar.gz (POSIX sh runner)
  ingest STREAM                a stream from the bundle's runner -> the report directory

`check` reads its options once into a Config (runner/config.py, where each
is declared), chooses a target from the registry (runner/targets/), has it
check the options (the one accept/refuse rule), installs the packages the
target needs, and runs it; every target ends in runner/finish.py.

Errors are one line on stderr, naming what is wrong and what to do, with a
non-zero exit status; never a traceback.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from . import compare, config, discover, finish, matrix, report
from .errors import UsageError
from .targets import registry

ROOT = discover.ROOT


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (UsageError)."""

    def error(self, message):
        raise UsageError("%s (see `python -m runner %s--help`)" % (
            message, self.prog.split()[-1] + " " if " " in self.prog else ""))


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="sockprobe", description="socket and process semantics conformance suite")
    sub = p.add_subparsers(dest="cmd", parser_class=Parser)
    config.add_arguments(sub.add_parser("check", help="run the suite and write reports"))
    cp = sub.add_parser("compare", help="compare two or more report.json files")
    cp.add_argument("reports", nargs="+", metavar="REPORT", help="report.json files or run directories")
    cp.add_argument("--out", default=str(ROOT / "reports"), help="where compare-*/ is written")
    b = sub.add_parser("bench", help="time the suite (make check, runner overhead, REPEAT, UML)")
    b.add_argument("--runs", type=int, default=5)
    b.add_argument("--no-uml", action="store_true")
    b.add_argument("--no-kernels", action="store_true", help="do not time make check-kernels")
    b.add_argument("--reports", default=str(ROOT / "reports"))
    so = sub.add_parser("soak", help="every item N times under CPU load; report verdict flips")
    so.add_argument("--runs", type=int, default=100)
    so.add_argument("--no-load", action="store_true", help="without stress-ng")
    so.add_argument("--reports", default=str(ROOT / "reports"))
    k = sub.add_parser("kernels", help="the registry's kernel targets side by side, then one "
                       "comparison")
    k.add_argument("--timeout", type=float, default=10.0, help="seconds per item")
    k.add_argument("--reports", default=str(ROOT / "reports"), help="report directory")
    k.add_argument("--jobs", type=int, default=None,
                   help="runs at once (default: up to twice the cores, as memory allows)")
    from . import mutate
    mutate.add_arguments(sub.add_parser("mutate", help="run every fault against the suite; score"))
    from . import paths
    paths.add_arguments(sub.add_parser(
        "paths", help="per catalogue ID, the reads, writes and waits its items went through"))
    from . import refmatrix
    refmatrix.add_arguments(sub.add_parser(
        "matrix", help="every target this machine can run, written as docs/matrix.md"))
    from . import dist
    dist.add_arguments(sub)
    sub.add_parser("list", help="list tests with their catalogue IDs").add_argument(
        "--build", default=str(discover.BUILD))
    sub.add_parser("test-deps", help="install every target's packages and fetch the kernels "
                   "the project's own tests boot (make test-deps)")
    return p


def cmd_check(cfg: config.Config) -> int:
    """Choose the target, let it check the options, install what it
    needs, run it; BASELINE= judges the run against an earlier one."""
    target = registry.choose(cfg).make(cfg)
    target.check_options(cfg)
    finish.writable(Path(cfg.reports))
    registry.install(target.packages(cfg))
    rc = target.run(cfg, say=_say)
    if cfg.baseline and rc in (0, 1):
        return finish.judge_baseline(Path(cfg.reports) / "latest" / "report.json", cfg.baseline)
    return rc


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_compare(a) -> int:
    text, differ, d = compare.compare(a.reports, Path(a.out))
    sys.stdout.write(text)
    print("written: %s/compare.md, %s/compare.html" % (d, d))
    print("verdicts %s" % ("differ" if differ else "agree"))
    return 1 if differ else 0


def _run_check(args: list, relay: bool = False) -> tuple:
    """`runner check ARGS` as a child process; see matrix.run_check."""
    return matrix.run_check(args, relay)


def cmd_kernels(a) -> int:
    """host, UML, QEMU 6.1 and 6.12, then one comparison (runner/matrix.py)."""
    return matrix.run(a)


def cmd_soak(a) -> int:
    """Flake hunting: the whole suite, every item --runs times, two at a
    time, while stress-ng keeps every core busy. Any item whose verdict
    ever differs is a flake to fix at its cause."""
    import shutil
    import signal
    import subprocess
    if a.runs < 1:
        raise UsageError("--runs must be at least 1")
    load = None
    if not a.no_load:
        if not shutil.which("stress-ng"):
            raise UsageError("stress-ng is not installed (apt-get install stress-ng), or use --no-load")
        load = subprocess.Popen(["stress-ng", "--cpu", "0", "--timeout", "3600s", "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    started = time.time()
    try:
        r, path = _run_check(["-n", "2", "--repeat", str(a.runs), "--reports", a.reports],
                             relay=True)
    finally:
        if load:
            os.killpg(load.pid, signal.SIGKILL)
            load.wait()
    if not path:
        raise UsageError("the soak run wrote no report: %s" % (r.stderr.strip() or r.stdout[-300:]))
    doc = report.load(path)
    print("soak: %d runs of %d items%s in %.0f s" % (
        a.runs, len(doc["results"]) // a.runs, " under stress-ng on every core" if load else "",
        time.time() - started))
    print("\n".join(report.terminal_summary(doc, path.parent)))
    bad = doc["flips"] or sum(doc["counts"][v] for v in report.BAD)
    return 1 if bad else 0


def cmd_test_deps(a) -> int:
    """What the project's own tests need beyond the Makefile's list: every
    registry target's packages (UML, QEMU, ssh, wrappers, sandboxes), the
    arm64 guest's QEMU, and the kernels tests boot (Debian's 6.1 for
    amd64 and arm64), fetched into the cache."""
    from . import debarch, kernels
    packages = sorted({p for e in registry.ENTRIES for p in e.packages} | {"qemu-system-arm"})
    registry.install(packages)
    print("test-deps: packages installed: %s" % " ".join(packages))
    for what, fetch in (("Debian's 6.1 kernel (amd64)", lambda: kernels.debian_kernel("6.1")),
                        ("Debian's 6.1 kernel (arm64)", lambda: debarch.kernel("aarch64", "6.1")),
                        ("Debian's arm64 dnsmasq", lambda: debarch.dns_server("aarch64"))):
        fetch()
        print("test-deps: %s is in %s" % (what, kernels.CACHE))
    return 0


def cmd_list(a) -> int:
    for i in discover.all_items(Path(a.build)):
        print("%-64s %s" % (i.name, ",".join(i.ids)))
    return 0


def _print_ktap(reports: Path) -> None:
    """For consoles that kernel CI reads (LAVA, KernelCI): the KTAP of the
    run just written."""
    f = reports / "latest" / "results.ktap"
    if f.is_file():
        sys.stdout.write(f.read_text())
        sys.stdout.flush()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every run stops the same way: probes'
    groups and guests killed, partial report written."""
    signum = signal.SIGTERM


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        a = parser().parse_args(argv)
        if a.cmd == "check":
            cfg = config.from_arguments(a)
            rc = cmd_check(cfg)
            if cfg.ktap:
                _print_ktap(Path(cfg.reports))
            return rc
        if a.cmd == "list":
            return cmd_list(a)
        if a.cmd == "test-deps":
            return cmd_test_deps(a)
        if a.cmd == "compare":
            return cmd_compare(a)
        if a.cmd == "kernels":
            return cmd_kernels(a)
        if a.cmd == "soak":
            return cmd_soak(a)
        if a.cmd == "matrix":
            from . import refmatrix
            from . import expect
            try:
                return refmatrix.cmd(a)
            except (refmatrix.MatrixError, expect.ExpectError) as e:
                raise UsageError(str(e))
        if a.cmd == "mutate":
            from . import mutate
            return mutate.cmd(a)
        if a.cmd == "paths":
            from . import paths
            return paths.cmd(a)
        if a.cmd in ("dist", "ingest"):
            from . import dist
            return dist.cmd(a)
        if a.cmd == "bench":
            from . import bench
            if a.runs < 1:
                raise UsageError("--runs must be at least 1")
            bench.bench(a.runs, Path(a.reports), with_uml=not a.no_uml,
                        with_kernels=not a.no_kernels)
            return 0
        raise UsageError("say what to do: check or list (see `python -m runner --help`)")
    except (UsageError, discover.DiscoveryError, report.ReportError, matrix.MatrixError) as e:
        print("sockprobe: error: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        sig = getattr(e, "signum", signal.SIGINT)
        print("sockprobe: interrupted (%s)" % signal.Signals(sig).name, file=sys.stderr)
        return 128 + sig
