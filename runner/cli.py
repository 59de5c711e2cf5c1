"""sockprobe's command line (python -m runner ...; `make check` calls it).

  check [options] [TEST ...]   run the suite (or some tests) and write reports
  list                         the tests, their families and catalogue IDs
  compare REPORT REPORT...     side-by-side verdicts and differing values
  mutate [FAULT ...]           the mutation campaign: every fault against the suite
  dist                         the bundle: sockprobe-VERSION-ARCH.tar.gz (POSIX sh runner)
  ingest STREAM                a stream from the bundle's runner -> the report directory

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

from . import compare, discover, expect, guest, matrix, report
from . import arch as arch_mod
from .targets import gvisor, host, qemu, uml, vm

ROOT = discover.ROOT


class CliError(Exception):
    pass


from .dist import DistError as _DistError  # noqa: E402  (dist, ingest, ssh)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CliError("%s (see `python -m runner %s--help`)" % (
            message, self.prog.split()[-1] + " " if " " in self.prog else ""))


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sockprobe", description="socket and process semantics conformance suite")
    sub = p.add_subparsers(dest="cmd", parser_class=_Parser)
    c = sub.add_parser("check", help="run the suite and write reports")
    c.add_argument("tests", nargs="*", metavar="TEST",
                   help="probe (tcp), test (tcp/NAME) or item (tcp/NAME[ipv6]); default all")
    c.add_argument("--timeout", type=float, default=5.0, help="seconds per item (default 5)")
    c.add_argument("--preload", help="absolute path of an LD_PRELOAD library for the probes")
    c.add_argument("--wrap", metavar="'CMD ARGS'",
                   help="run every probe as CMD ARGS PROBE ... inside its isolation "
                        "(e.g. proot, 'valgrind --tool=none')")
    c.add_argument("--reports", default=str(ROOT / "reports"), help="report directory")
    c.add_argument("--build", default=str(discover.BUILD), help="build directory")
    c.add_argument("--host", action="store_true", help="no namespaces: run on the host loopback")
    c.add_argument("--family", action="append", choices=("ipv4", "ipv6"))
    c.add_argument("-k", dest="keyword", help="pytest -k expression")
    c.add_argument("-m", dest="marker", help="pytest -m expression")
    c.add_argument("-n", dest="workers", help="parallel workers (pytest-xdist), e.g. 2 or auto")
    c.add_argument("-v", dest="verbose", action="count", default=0)
    c.add_argument("-q", dest="quiet", action="store_true")
    c.add_argument("--repeat", type=int, default=1, help="run every item N times; count flips")
    c.add_argument("--baseline", help="report.json: fail only on behaviors worse than in it")
    c.add_argument("--kernel", help="run under another kernel: uml, 6.1, 6.12 or a bzImage path")
    c.add_argument("--libc", choices=("glibc", "musl"), default="glibc",
                   help="musl: the static musl probes (build/musl)")
    c.add_argument("--arch", metavar="ARCH",
                   help="another CPU: %s (build/ARCH, under qemu-user on this kernel)"
                        % ", ".join(arch_mod.ARCHES))
    c.add_argument("--expect", metavar="NAME|FILE",
                   help="known deviations (expectations/NAME.tsv or a .tsv file) become xfail")
    c.add_argument("--ktap", action="store_true",
                   help="also print the run's results.ktap (KTAP v1) to stdout at the end")
    c.add_argument("--target", metavar="ssh://USER@HOST[:PORT]",
                   help="run the bundle on a remote machine over ssh (runner/targets/ssh.py)")
    c.add_argument("--guest-timeout", type=float, default=None,
                   help="seconds a guest kernel may take in all (default: a boot bound "
                        "plus items x --timeout)")
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
    k = sub.add_parser("kernels", help="host, UML 6.1, QEMU 6.1 and 6.12, then one comparison")
    k.add_argument("--timeout", type=float, default=10.0, help="seconds per item")
    k.add_argument("--reports", default=str(ROOT / "reports"), help="report directory")
    k.add_argument("--jobs", type=int, default=None,
                   help="runs at once (default: up to twice the cores, as memory allows)")
    from . import mutate
    mutate.add_arguments(sub.add_parser("mutate", help="run every fault against the suite; score"))
    from . import refmatrix
    refmatrix.add_arguments(sub.add_parser(
        "matrix", help="every target this machine can run, written as docs/matrix.md"))
    from . import dist
    dist.add_arguments(sub)
    sub.add_parser("list", help="list tests with their catalogue IDs").add_argument(
        "--build", default=str(discover.BUILD))
    return p


def _select(tests: list, items: list, families=None) -> list:
    """Map TEST arguments to pytest node ids; unknown names are errors.
    With families (FAMILY=...), only the items of those families."""
    nodes = []
    for t in tests:
        probe, _, rest = t.partition("/")
        matches = [i for i in items if i.probe == probe and
                   (not rest or rest in (i.test, i.name.split("/", 1)[1]))]
        if not matches:
            known = sorted({i.probe for i in items})
            if probe not in known:
                raise CliError("unknown probe '%s' (probes: %s; `make list` shows every test)"
                               % (probe, ", ".join(known)))
            raise CliError("unknown test '%s' (`make list` shows every test)" % t)
        if families:
            matches = [i for i in matches if i.family in families or i.family == "none"]
            if not matches:
                raise CliError("'%s' has no item of family %s" % (t, ", ".join(families)))
        for i in matches:
            fam = "" if i.family == "none" else "[%s]" % i.family
            nodes.append("cases/%s.c::%s%s" % (i.probe, i.test, fam))
    return nodes


def _repeat_nodes(nodes: list, repeat: int) -> list:
    """Node ids of the repeated items (they are named NAME@1..NAME@N)."""
    if repeat <= 1:
        return nodes
    return ["%s@%d" % (n, r) for n in nodes if "::" in n for r in range(1, repeat + 1)] + \
        [n for n in nodes if "::" not in n]


def _check_wrap(a) -> None:
    """WRAP='cmd args': the command must exist; it wraps the probes only,
    so it cannot be combined with a guest kernel or PRELOAD."""
    import shlex
    import shutil
    try:
        words = shlex.split(a.wrap)
    except ValueError as e:
        raise CliError("WRAP is not a valid command line (%s)" % e)
    if not words:
        raise CliError("WRAP is empty")
    if shutil.which(words[0]) is None:
        raise CliError("WRAP command '%s' is not installed or not on PATH" % words[0])
    if a.kernel:
        raise CliError("WRAP runs probes on this kernel; it does not combine with KERNEL=")
    if a.preload:
        raise CliError("WRAP and PRELOAD do not combine: the library would be loaded into "
                       "the wrapper too")


def _check_arch(a) -> None:
    """ARCH=...: one of the known architectures, probes under qemu-user
    on this kernel; nothing else loaded into or wrapped around them."""
    try:
        arch_mod.validate(a.arch)
    except arch_mod.ArchError as e:
        raise CliError(str(e))
    if a.kernel and (a.arch != "aarch64" or a.kernel not in ("6.1", "6.12")):
        raise CliError("ARCH=%s with KERNEL=%s is not supported: a guest kernel of another "
                       "architecture is KERNEL=6.1 or 6.12 with ARCH=aarch64" % (a.arch, a.kernel))
    for what, on in (("PRELOAD", a.preload), ("WRAP", a.wrap), ("LIBC=musl", a.libc == "musl"),
                     ("HOST", a.host)):
        if on:
            raise CliError("ARCH=%s does not combine with %s (the probes run under qemu-user)"
                           % (a.arch, what))


def cmd_check(a) -> int:
    if a.preload:
        if not os.path.isabs(a.preload):
            raise CliError("PRELOAD must be an absolute path (got '%s')" % a.preload)
        if not os.path.isfile(a.preload):
            raise CliError("PRELOAD library '%s' does not exist" % a.preload)
    if a.wrap:
        _check_wrap(a)
    if a.timeout <= 0:
        raise CliError("--timeout must be a positive number of seconds")
    if a.repeat < 1:
        raise CliError("--repeat must be at least 1")
    if a.expect:
        try:
            expect.load(expect.resolve(a.expect))
        except (expect.ExpectError, OSError) as e:
            raise CliError(str(e))
        a.expect = str(expect.resolve(a.expect))
    if getattr(a, "arch", None):
        _check_arch(a)
    if a.target:
        from .targets import ssh
        return ssh.check(a)
    if a.kernel:
        return cmd_guest(a)
    _writable(Path(a.reports))
    build = Path(a.build)
    if getattr(a, "arch", None):
        a.isolate = str(build / "sp-isolate")   # native: see runner/arch.py
        build = build / a.arch
        if not (build / "sp-isolate").exists():
            raise CliError("the %s probes are not built: run `make check ARCH=%s`" % (a.arch, a.arch))
        try:
            arch_mod.emulator(build / "sp-isolate")
        except arch_mod.ArchError as e:
            raise CliError(str(e))
        if not os.path.exists(a.isolate):
            raise CliError("%s is not built: run `make check ARCH=%s` (it builds first)"
                           % (a.isolate, a.arch))
    if a.libc == "musl":
        build = discover.BUILD / "musl"
        if not (build / "sp-isolate").exists():
            raise CliError("the static musl probes are not built: run `make check LIBC=musl`")
    if not (build / "sp-isolate").exists():
        raise CliError("%s/sp-isolate is not built: run `make check` (it builds first)" % build)
    items = discover.all_items(build)
    nodes = _repeat_nodes(_select(a.tests, items, a.family), a.repeat) if a.tests else ["cases"]
    if a.workers:
        import importlib.util
        if importlib.util.find_spec("xdist") is None:
            raise CliError("-n needs pytest-xdist: apt-get install python3-pytest-xdist")
    import pytest

    baseline = None
    if a.baseline:
        try:
            baseline = report.load(a.baseline)
        except report.ReportError as e:
            raise CliError("baseline %s" % e)
    rc = host.run(a, build, nodes)
    if rc == pytest.ExitCode.NO_TESTS_COLLECTED:
        raise CliError("no test matched the selection (check -k/-m/--family)")
    if baseline is not None and rc in (0, 1):
        return _judge_baseline(Path(a.reports) / "latest" / "report.json", baseline, a.baseline)
    # The exit-status contract (README): 0 every Must holds, 1 a Must
    # failed (or an item broke, crashed or timed out), 2 usage or set-up
    # error (pytest's usage and internal errors, an unwritable report).
    if rc == pytest.ExitCode.INTERRUPTED:
        return 130
    return int(rc) if rc in (0, 1) else 2


def _judge_baseline(latest: Path, baseline: dict, where: str) -> int:
    """Changes against a previous run first; exit 1 only for new failures."""
    rows = compare.against_baseline(report.load(latest), baseline)
    count = {c: sum(1 for r in rows if r[0] == c) for c in compare.CLASSES}
    print("baseline %s: %s" % (where, ", ".join("%d %s" % (count[c], c) for c in compare.CLASSES)))
    for cls, item, was, now in rows:
        if cls != "unchanged":
            print("  %s: %s (%s in the baseline, %s now)" % (
                cls.upper(), item, was or "absent", now or "absent"))
    return 1 if count["new failure"] else 0


def cmd_compare(a) -> int:
    text, differ, d = compare.compare(a.reports, Path(a.out))
    sys.stdout.write(text)
    print("written: %s/compare.md, %s/compare.html" % (d, d))
    print("verdicts %s" % ("differ" if differ else "agree"))
    return 1 if differ else 0


def _writable(reports: Path) -> None:
    try:
        reports.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError("cannot create the report directory %s: %s (choose another with "
                       "REPORT_DIR=... or --reports)" % (reports, e.strerror))
    if not os.access(reports, os.W_OK | os.X_OK):
        raise CliError("cannot write reports to %s: permission denied (choose another with "
                       "REPORT_DIR=... or --reports)" % reports)


def cmd_guest(a) -> int:
    _writable(Path(a.reports))
    static = discover.BUILD / (getattr(a, "arch", None) or "static")
    if not (static / "sp-isolate").exists():
        raise CliError("the static probes are not built: run `make check KERNEL=%s`" % a.kernel)
    if a.preload:
        raise CliError("PRELOAD does not apply inside a guest kernel")
    tests = sorted({t.split("/")[0] for t in a.tests})
    known = sorted(p.name for p in (static / "probes").iterdir())
    for t in tests:
        if t not in known:
            raise CliError("unknown probe '%s' (probes: %s)" % (t, ", ".join(known)))
    if a.guest_timeout is not None and a.guest_timeout <= 0:
        raise CliError("--guest-timeout must be a positive number of seconds")
    if a.kernel == "uml":
        target = uml.Uml()
    elif a.kernel in gvisor.NETWORKS:
        target = gvisor.Gvisor(a.kernel)
    elif getattr(a, "arch", None):
        target = qemu.Qemu(series=a.kernel, arch=a.arch)
    elif a.kernel in guest.DEBIAN_META:
        target = qemu.Qemu(series=a.kernel)
    elif os.path.isfile(a.kernel):
        target = qemu.Qemu(image=Path(a.kernel).resolve())
    else:
        raise CliError("KERNEL must be uml, %s or the path of a kernel image (got '%s')"
                       % (", ".join(guest.DEBIAN_META), a.kernel))
    return vm.run(target, a, static, tests)


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
        raise CliError("--runs must be at least 1")
    load = None
    if not a.no_load:
        if not shutil.which("stress-ng"):
            raise CliError("stress-ng is not installed (apt-get install stress-ng), or use --no-load")
        load = subprocess.Popen(["stress-ng", "--cpu", "0", "--timeout", "3600s", "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    started = time.time()
    try:
        r, path = _run_check(["-n", "2", "--repeat", str(a.runs), "--reports", a.reports])
    finally:
        if load:
            os.killpg(load.pid, signal.SIGKILL)
            load.wait()
    if not path:
        raise CliError("the soak run wrote no report: %s" % (r.stderr.strip() or r.stdout[-300:]))
    doc = report.load(path)
    print("soak: %d runs of %d items%s in %.0f s" % (
        a.runs, len(doc["results"]) // a.runs, " under stress-ng on every core" if load else "",
        time.time() - started))
    print("\n".join(report.terminal_summary(doc, path.parent)))
    bad = doc["flips"] or sum(doc["counts"][v] for v in report.BAD)
    return 1 if bad else 0


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
        a = _parser().parse_args(argv)
        if a.cmd == "check":
            rc = cmd_check(a)
            if a.ktap:
                _print_ktap(Path(a.reports))
            return rc
        if a.cmd == "list":
            return cmd_list(a)
        if a.cmd == "compare":
            return cmd_compare(a)
        if a.cmd == "kernels":
            return cmd_kernels(a)
        if a.cmd == "soak":
            return cmd_soak(a)
        if a.cmd == "matrix":
            from . import refmatrix
            try:
                return refmatrix.cmd(a)
            except (refmatrix.MatrixError, expect.ExpectError, report.ReportError) as e:
                raise CliError(str(e))
        if a.cmd == "mutate":
            from . import mutate
            return mutate.cmd(a)
        if a.cmd in ("dist", "ingest"):
            from . import dist
            return dist.cmd(a)
        if a.cmd == "bench":
            from . import bench
            if a.runs < 1:
                raise CliError("--runs must be at least 1")
            bench.bench(a.runs, Path(a.reports), with_uml=not a.no_uml,
                        with_kernels=not a.no_kernels)
            return 0
        raise CliError("say what to do: check or list (see `python -m runner --help`)")
    except (CliError, discover.DiscoveryError, report.ReportError, guest.GuestError,
            matrix.MatrixError, _DistError) as e:
        print("sockprobe: error: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        sig = getattr(e, "signum", signal.SIGINT)
        print("sockprobe: interrupted (%s)" % signal.Signals(sig).name, file=sys.stderr)
        return 128 + sig
