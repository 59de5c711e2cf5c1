"""pytest plugin: one pytest item per (probe test, family).

Collection reads `probe --list` of each cases/*.c probe; running an item
runs that probe test in its own namespaces (runner/execute.py), with -n
many at once ahead of pytest's loop (runner/ahead.py); the session
gathers every result record and finishes the run at its end
(runner/finish.py). A plain `pytest -n N` with pytest-xdist works too (the
controller gathers the workers' records).

The run configuration (runner/config.py) arrives as one option,
--sp-config, written by the host target (runner/targets/host.py). A plain
`pytest` from the top directory runs with the defaults.
"""
from __future__ import annotations

import os
import json
import time
from pathlib import Path

import pytest

from . import ahead, arch, discover, execute, expect, finish, report, verdicts
from .config import Config
from .errors import UsageError

_KEY = "sockprobe_result"


def pytest_addoption(parser):
    parser.getgroup("sockprobe").addoption(
        "--sp-config", default=None,
        help="the run configuration as JSON (runner/config.py; `python -m runner check` "
             "writes it)")


def _config(config) -> Config:
    text = config.getoption("--sp-config")
    return Config.from_json(text) if text else Config()


def _build(cfg: Config) -> Path:
    return Path(cfg.extra.get("build") or cfg.build)


def _settings(cfg: Config) -> execute.Settings:
    isolate = Path(cfg.extra.get("isolate") or _build(cfg) / "sp-isolate")
    return execute.Settings(
        isolate=str(isolate) if isolate.exists() else None,
        timeout_s=cfg.timeout, preload=cfg.preload, wrap=cfg.wrap_words or None,
        host_only=cfg.host)


def pytest_configure(config):
    global _session_config
    _session_config = config
    config._sp_cfg = _config(config)
    config._sp_settings = _settings(config._sp_cfg)
    config._sp_results = []
    config._sp_started = time.time()
    path = config._sp_cfg.expect
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
        cfg = self.config._sp_cfg
        repeat = max(1, cfg.repeat)
        for it in discover.items_of(discover.probe_binary(self.path.stem, _build(cfg)),
                                    cfg.family or None):
            name = it.test if it.family == "none" else "%s[%s]" % (it.test, it.family)
            for r in range(repeat):
                yield ProbeItem.from_parent(self, name=name if repeat == 1 else "%s@%d" % (name, r + 1),
                                            sp_item=it, repeat=r + 1 if repeat > 1 else 0)


def pytest_collection_modifyitems(session, config, items):
    """Slow items first (a stable sort: the rest keep their order), so in a
    parallel run a test that spends a second by design (a SYN
    retransmission, alarm(1)) runs while the quick items go by."""
    items.sort(key=lambda i: -i.sp_item.slow if isinstance(i, ProbeItem) else 0.0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session):
    """With -n/JOBS, the items run ahead, that many at once (runner/ahead.py)."""
    config = session.config
    n = ahead.width(config._sp_cfg.workers)
    probes = [i for i in session.items if isinstance(i, ProbeItem)]
    config._sp_ahead = None
    if n > 1 and len(probes) > 1 and not _is_worker(config) and \
            not config.option.collectonly:
        config._sp_ahead = ahead.RunAhead(probes, config._sp_settings, n)
    try:
        yield
    finally:
        if config._sp_ahead is not None:
            config._sp_ahead.stop()


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
        pool = getattr(self.config, "_sp_ahead", None)
        rec = pool.result(self) if pool is not None else None
        if rec is None:
            rec = execute.run_item(self.sp_item, self.config._sp_settings)
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
            return "%s: %s\n%s" % (verdicts.shown(rec, upper=True), rec["item"],
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
            _session_config._sp_results.append(json.loads(value))


_session_config = None  # the session's config: logreport hooks are not given it


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def environment(cfg: Config, s: execute.Settings) -> dict:
    """The report's environment of a host run."""
    build = _build(cfg)
    env = discover.probe_environment(build, s.isolate, s.host_only)
    env.update(report.runner_environment())
    env["preload"] = s.preload
    env["wrap"] = cfg.wrap
    env.update(arch.environment(build, s.isolate if not s.host_only else None))
    env.setdefault("isolation", "none" if not s.isolate else "unknown")
    return env


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    results = config._sp_results
    if _is_worker(config) or not results:
        return
    # Under xdist the controller holds no items; testscollected still counts.
    collected = getattr(session, "testscollected", 0) or len(results)
    partial = (exitstatus == pytest.ExitCode.INTERRUPTED or len(results) < collected)
    cfg, s = config._sp_cfg, config._sp_settings
    env = environment(cfg, s)
    env["item_isolation"] = finish.isolation_modes(results)
    env["timeout_s"] = s.timeout_s
    env["repeat"] = cfg.repeat
    env["expectations"] = cfg.expect
    doc = None
    try:
        doc, config._sp_report_dir = finish.complete(
            results, env, Path(cfg.reports), expectations=cfg.expect, partial=partial,
            started=config._sp_started, finished=time.time())
    except (OSError, UsageError) as e:
        config._sp_report_error = "cannot write the report under %s: %s" % (
            cfg.reports, getattr(e, "strerror", None) or e)
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    config._sp_report = doc


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if getattr(config, "_sp_report_error", None):
        terminalreporter.write_line("sockprobe: error: %s" % config._sp_report_error)
    if _is_worker(config) or not getattr(config, "_sp_report_dir", None):
        return
    terminalreporter.section("sockprobe")
    for line in finish.lines(config._sp_report, config._sp_report_dir, failures=False):
        terminalreporter.write_line(line)
