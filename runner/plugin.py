"""pytest plugin: one pytest item per (probe test, family).

Collection reads `probe --list` of each cases/*.c probe; running an item
runs that probe test in its own namespaces (runner/execute.py); the
controller (also under pytest-xdist) gathers every result and writes the
run's reports at the end (runner/report.py).
"""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest

from . import arch, discover, execute, expect, report

_KEY = "sockprobe_result"


def pytest_addoption(parser):
    g = parser.getgroup("sockprobe")
    g.addoption("--sp-timeout", type=float, default=5.0,
                help="seconds per item before its process group is killed (default 5)")
    g.addoption("--sp-wrap", default=None,
                help="run every probe as `WRAP PROBE ARGS` inside its isolation (proot, valgrind ...)")
    g.addoption("--sp-preload", default=None,
                help="absolute path of a library to LD_PRELOAD into every probe")
    g.addoption("--sp-reports", default=str(discover.ROOT / "reports"),
                help="where run directories are written (default reports/)")
    g.addoption("--sp-build", default=str(discover.BUILD),
                help="build directory holding probes/ and sp-isolate")
    g.addoption("--sp-host", action="store_true",
                help="run on the host loopback, without namespaces")
    g.addoption("--sp-family", action="append", choices=("ipv4", "ipv6"),
                help="only this address family (repeatable)")
    g.addoption("--sp-expect", default=None,
                help="expectation file (expectations/NAME.tsv): known deviations become xfail")
    g.addoption("--sp-isolate", default=None,
                help="path of sp-isolate (default: BUILD/sp-isolate; ARCH= runs use the native one)")
    g.addoption("--sp-repeat", type=int, default=1,
                help="run every item N times (flake hunting); the report counts flips")


def _settings(config) -> execute.Settings:
    build = Path(config.getoption("--sp-build"))
    isolate = Path(config.getoption("--sp-isolate") or build / "sp-isolate")
    return execute.Settings(
        isolate=str(isolate) if isolate.exists() else None,
        timeout_s=config.getoption("--sp-timeout"),
        preload=config.getoption("--sp-preload"),
        wrap=shlex.split(config.getoption("--sp-wrap")) if config.getoption("--sp-wrap") else None,
        host_only=config.getoption("--sp-host"))


def pytest_configure(config):
    global _config
    _config = config
    config._sp_results = []
    config._sp_started = time.time()
    path = config.getoption("--sp-expect")
    config._sp_expect = expect.load(expect.resolve(path)) if path else {}
    for fam in ("ipv4", "ipv6", "nofamily"):
        config.addinivalue_line("markers", "%s: items of that address family" % fam)
    for src in sorted(discover.CASES.glob("*.c")):
        config.addinivalue_line("markers", "%s: items of cases/%s" % (src.stem, src.name))


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".c" and file_path.parent == discover.CASES:
        return ProbeFile.from_parent(parent, path=file_path)
    return None


class ProbeFile(pytest.File):
    def collect(self):
        build = Path(self.config.getoption("--sp-build"))
        fams = self.config.getoption("--sp-family")
        repeat = max(1, self.config.getoption("--sp-repeat"))
        for it in discover.items_of(discover.probe_binary(self.path.stem, build), fams):
            name = it.test if it.family == "none" else "%s[%s]" % (it.test, it.family)
            for r in range(repeat):
                yield ProbeItem.from_parent(self, name=name if repeat == 1 else "%s@%d" % (name, r + 1),
                                            sp_item=it, repeat=r + 1 if repeat > 1 else 0)


def pytest_collection_modifyitems(session, config, items):
    """Slow items first (a stable sort: the rest keep their order), so in a
    parallel run a test that spends a second by design (alarm(1)) runs
    while the other workers go through the quick items."""
    items.sort(key=lambda i: -i.sp_item.slow if isinstance(i, ProbeItem) else 0.0)


class ProbeFailure(Exception):
    pass


class ProbeItem(pytest.Item):
    def __init__(self, *, sp_item: execute.Item, repeat: int = 0, **kw):
        super().__init__(**kw)
        self.sp_item = sp_item
        self.sp_repeat = repeat
        self.add_marker(sp_item.family if sp_item.family != "none" else "nofamily")
        self.add_marker(sp_item.probe)
        for i in sp_item.ids:
            self.extra_keyword_matches.add(i)

    def runtest(self):
        rec = execute.run_item(self.sp_item, _settings(self.config))
        if self.sp_repeat:
            rec["repeat"] = self.sp_repeat
        expect.apply(rec, self.config._sp_expect)
        self.user_properties.append((_KEY, json.dumps(rec)))
        if rec["verdict"] == "skip":
            pytest.skip(rec["message"] or "skipped by the probe")
        if rec["verdict"] == "xfail":
            pytest.xfail(rec["message"])
        if rec["verdict"] not in ("pass", "xpass"):
            raise ProbeFailure(rec)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ProbeFailure):
            rec = excinfo.value.args[0]
            return "%s: %s\n%s" % (rec["verdict"].upper(), rec["item"],
                                   report.detail(rec))
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, self.sp_item.name


def pytest_runtest_logreport(report):
    # Runs on the controller for its own items and for xdist workers' items.
    if report.when != "call":
        return
    for key, value in getattr(report, "user_properties", []):
        if key == _KEY:
            _config._sp_results.append(json.loads(value))


_config = None  # the session's config: logreport hooks are not given it


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    results = config._sp_results
    if _is_worker(config) or not results:
        return
    # Under xdist the controller holds no items; testscollected still counts.
    collected = getattr(session, "testscollected", 0) or len(results)
    partial = (exitstatus == pytest.ExitCode.INTERRUPTED or len(results) < collected)
    s = _settings(config)
    env = discover.probe_environment(Path(config.getoption("--sp-build")),
                                     s.isolate, s.host_only)
    env.update(report.runner_environment())
    env["preload"] = s.preload
    env["wrap"] = config.getoption("--sp-wrap")
    env.update(arch.environment(Path(config.getoption("--sp-build")),
                                s.isolate if not s.host_only else None))
    env.setdefault("isolation", "none" if not s.isolate else "unknown")
    modes = sorted({r.get("isolation", "none") for r in results})
    env["item_isolation"] = modes
    env["timeout_s"] = s.timeout_s
    env["repeat"] = config.getoption("--sp-repeat")
    env["expectations"] = config.getoption("--sp-expect")
    doc = None
    try:
        doc, config._sp_report_dir = report.publish(
            results, env, Path(config.getoption("--sp-reports")), partial=partial,
            started=config._sp_started, finished=time.time())
    except OSError as e:
        config._sp_report_error = "cannot write the report under %s: %s" % (
            config.getoption("--sp-reports"), e.strerror or e)
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    config._sp_report = doc


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if getattr(config, "_sp_report_error", None):
        terminalreporter.write_line("sockprobe: error: %s" % config._sp_report_error)
    if _is_worker(config) or not getattr(config, "_sp_report_dir", None):
        return
    terminalreporter.section("sockprobe")
    for line in report.terminal_summary(config._sp_report, config._sp_report_dir):
        terminalreporter.write_line(line)
