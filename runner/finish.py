"""The one finish step of every run, whatever target produced the result
records: expectations, kernel health, the environment, the report
directory (report.publish), the terminal lines and the exit status.

The host target finishes inside pytest (runner/plugin.py, at the end of
the session: pytest is its scheduler, and a plain `pytest` run writes the
same reports); stream targets (runner/targets/stream.py) and `ingest`
(runner/dist.py) call complete() and then lines()/status() themselves.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import compare, expect, health as health_mod, report, verdicts
from .errors import UsageError


def writable(reports: Path) -> None:
    """The report directory exists and can be written, or one line."""
    try:
        reports.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError("cannot create the report directory %s: %s (choose another with "
                         "REPORT_DIR=... or --reports)" % (reports, e.strerror))
    if not os.access(reports, os.W_OK | os.X_OK):
        raise UsageError("cannot write reports to %s: permission denied (choose another with "
                         "REPORT_DIR=... or --reports)" % reports)


def stream_environment(parsed: dict) -> dict:
    """The report's environment for a framed stream (a guest, a remote, a
    bundle): what its first probe reported and the runner's own; the
    target adds what names it."""
    env = dict(parsed["env"])
    env.update(report.runner_environment())
    env["kernel"] = parsed["kernel"] or env.get("kernel")
    return env


def isolation_modes(results: list) -> list:
    return sorted({r.get("isolation", "none") for r in results})


def kernel_health(results: list, env: dict, records: list) -> dict:
    """A guest's health records -> env["kernel_health"], and each problem
    beside the item that had just run; the health summary."""
    h = health_mod.kernel_health(records)
    env["kernel_health"] = h
    by_item = {}
    for pr in h["problems"]:
        by_item.setdefault(pr["item"], []).append(pr["message"])
    for r in results:
        if r["item"] in by_item:
            r["kernel_health"] = by_item[r["item"]]
    return h


def apply_expectations(results: list, env: dict, expectations: str | None) -> None:
    """Known deviations (an expectation file) become xfail; idempotent."""
    if not expectations:
        return
    table = expect.load(Path(expectations))
    for r in results:
        expect.apply(r, table)
    env["expectations"] = expectations


def complete(results: list, env: dict, reports: Path, *, expectations: str | None = None,
             partial: bool = False, started=None, finished=None) -> tuple:
    """Expectations applied, the run directory written; (doc, run dir)."""
    apply_expectations(results, env, expectations)
    writable(reports)
    return report.publish(results, env, reports, partial=partial, started=started,
                          finished=finished)


def bad(doc: dict) -> list:
    return [r for r in doc["results"] if r["verdict"] in verdicts.BAD]


def lines(doc: dict, run_dir: Path, *, failures: bool = True) -> list:
    """What a run ends with on the terminal: each item that did not pass
    (unless the scheduler showed them already: pytest), the kernel's
    problems, then report.terminal_summary."""
    out = []
    if failures:
        out += ["  %s %s: %s" % (verdicts.shown(r, upper=True), r["item"], r["message"])
                for r in bad(doc)]
        out += [pr["message"] for pr in
                (doc["environment"].get("kernel_health") or {}).get("problems", [])]
    return out + report.terminal_summary(doc, run_dir)


def status(doc: dict) -> int:
    """0 every Must holds, 1 a Must failed, an item broke, crashed or timed
    out, the guest kernel's health failed, or the run is partial."""
    problems = (doc["environment"].get("kernel_health") or {}).get("problems", [])
    return 1 if doc.get("partial") or bad(doc) or problems else 0


def judge_baseline(latest: Path, baseline_path: str) -> int:
    """BASELINE=report.json: changes against it first; exit 1 only for new
    failures."""
    try:
        base = report.load(baseline_path)
    except report.ReportError as e:
        raise UsageError("baseline %s" % e)
    rows = compare.against_baseline(report.load(latest), base)
    count = {c: sum(1 for r in rows if r[0] == c) for c in compare.CLASSES}
    print("baseline %s: %s" % (baseline_path, ", ".join("%d %s" % (count[c], c)
                                                         for c in compare.CLASSES)))
    for cls, item, was, now in rows:
        if cls != "unchanged":
            print("  %s: %s (%s in the baseline, %s now)" % (
                cls.upper(), item, was or "absent", now or "absent"))
    return 1 if count["new failure"] else 0
