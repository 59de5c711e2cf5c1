"""Reports: one run's results as report.json, junit.xml, summary.md and
results.ktap (KTAP version 1, runner/ktap.py).

A run directory under reports/ holds the four files; reports/latest
points at the newest. Every source of results (host, guest kernel,
LD_PRELOAD stack) goes through build() and write(), so all reports have
the same schema.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import uuid
from collections import Counter, OrderedDict
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from . import catalogue, ktap, verdicts
from .errors import UsageError

SCHEMA = "sockprobe-report/1"
ORDER = verdicts.ALL   # the order reports count verdicts in
BAD = verdicts.BAD


def build(results: list, environment: dict, *, partial: bool = False,
          started: float | None = None, finished: float | None = None) -> dict:
    """The report.json document."""
    ids = catalogue.load()
    covered = sorted({i for r in results for i in r.get("ids", [])})
    counts = Counter(r["verdict"] for r in results)
    per_item = {}
    for r in results:
        per_item.setdefault(r.get("item", r["test"]), Counter())[r["verdict"]] += 1
    flips = {i: dict(c) for i, c in sorted(per_item.items()) if len(c) > 1}
    return {
        "schema": SCHEMA,
        "partial": partial,
        "started": _iso(started),
        "finished": _iso(finished),
        "environment": environment,
        "counts": {v: counts.get(v, 0) for v in ORDER},
        "coverage": {
            "catalogue": ",".join(p.name for p in catalogue.paths()),
            "covered": covered,
            "not_covered": [i for i in ids if i not in covered],
        },
        "flips": flips,
        "results": sorted(results, key=lambda r: (r.get("item", r["test"]), r.get("repeat", 0))),
    }


def _iso(t):
    if t is None:
        return None
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")


def runner_environment() -> dict:
    """What the runner knows of itself (the probes report the rest)."""
    return {"runner_python": platform.python_version()}


def new_run_dir(base: Path) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    d = base / ("%s-%s" % (stamp, uuid.uuid4().hex[:6]))
    d.mkdir(parents=True, exist_ok=False)
    return d


def write(report: dict, base: Path) -> Path:
    """Write a run directory under base and point base/latest at it."""
    base.mkdir(parents=True, exist_ok=True)
    d = new_run_dir(base)
    (d / "report.json").write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    (d / "junit.xml").write_text(junit(report))
    (d / "summary.md").write_text(summary(report))
    (d / "results.ktap").write_text(ktap.render(report))
    latest = base / "latest"
    tmp = base / (".latest-%s" % uuid.uuid4().hex[:6])
    os.symlink(d.name, tmp)
    os.replace(tmp, latest)
    return d


def publish(results: list, environment: dict, base: Path, *, partial: bool = False,
            started: float | None = None, finished: float | None = None) -> tuple:
    """The one place results become reports, whatever target produced them
    (host through the pytest plugin, guests through targets/vm.py):
    build the document, write the run directory; (doc, run dir)."""
    doc = build(results, environment, partial=partial, started=started, finished=finished)
    return doc, write(doc, base)


def junit(report: dict) -> str:
    suites = OrderedDict()
    for r in report["results"]:
        suites.setdefault(r.get("probe") or r["test"].split("/")[0], []).append(r)
    out = ['<?xml version="1.0" encoding="UTF-8"?>']
    c = report["counts"]
    out.append('<testsuites name="sockprobe" tests="%d" failures="%d" errors="%d" skipped="%d">'
               % (len(report["results"]), c["fail"], c["error"] + c["timeout"] + c["broken"],
                  c["skip"] + c["xfail"]))
    for probe, rs in suites.items():
        cnt = Counter(r["verdict"] for r in rs)
        out.append('  <testsuite name=%s tests="%d" failures="%d" errors="%d" skipped="%d" time="%.3f">'
                   % (quoteattr("sockprobe." + probe), len(rs), cnt["fail"],
                      cnt["error"] + cnt["timeout"] + cnt["broken"], cnt["skip"] + cnt["xfail"],
                      sum(r.get("duration_s", 0) for r in rs)))
        for r in rs:
            name = r["item"].split("/", 1)[-1]
            out.append('    <testcase classname=%s name=%s time="%.3f">'
                       % (quoteattr("sockprobe." + probe), quoteattr(name), r.get("duration_s", 0)))
            out.append('      <properties><property name="ids" value=%s/></properties>'
                       % quoteattr(",".join(r["ids"])))
            msg = quoteattr(("needs %s: " % r["needs"] if r.get("needs") else "") +
                            (r.get("message") or r["verdict"]))
            if r["verdict"] == "fail":
                out.append('      <failure message=%s>%s</failure>' % (msg, escape(detail(r))))
            elif r["verdict"] in ("error", "timeout", "broken"):
                out.append('      <error type="%s" message=%s>%s</error>'
                           % (r["verdict"], msg, escape(detail(r))))
            elif r["verdict"] in ("skip", "xfail"):
                out.append('      <skipped message=%s/>' % msg)
            if r.get("observations"):
                obs = "\n".join("%s = %s" % kv for kv in r["observations"].items())
                out.append('      <system-out>%s</system-out>' % escape(obs))
            out.append('    </testcase>')
        out.append('  </testsuite>')
    out.append('</testsuites>')
    return "\n".join(out) + "\n"


def detail(r: dict) -> str:
    """A result's message, failed checks and log tail, for people."""
    lines = [r.get("message", "")]
    for f in r.get("failures", []):
        lines.append("%s: %s: expected %s, observed %s%s" % (
            f.get("at"), f.get("expr"), f.get("expected"), f.get("observed"),
            " (child %s)" % f["child"] if f.get("child") else ""))
    lines += r.get("log", [])
    return "\n".join(lines)


def premise_refusals(doc: dict) -> dict:
    """{what the stack refused: items}: set-ups the stack under test
    rejected although the kernel has them (observation premise_refused)."""
    out = Counter()
    for r in doc["results"]:
        what = r.get("observations", {}).get("premise_refused")
        if what:
            out[what] += 1
    return dict(sorted(out.items()))


def terminal_summary(doc: dict, run_dir: Path) -> list:
    """The lines every kind of run ends with: the system, what was not
    covered, partial runs and flips, per-verdict counts, the report path."""
    env = doc["environment"]
    lines = ["kernel %s%s, %s %s, isolation %s%s" % (
        env.get("kernel"), " (%s)" % env["guest"] if env.get("guest") else "",
        env.get("libc"), env.get("libc_version", ""), env.get("isolation"),
        " (%s)" % env["isolation_reason"] if env.get("isolation_reason") else "")]
    if env.get("emulator"):
        lines[0] += ", arch %s under %s" % (env.get("arch"), env["emulator"])
    nc = doc["coverage"]["not_covered"]
    if nc:
        lines.append("catalogue IDs not covered by this run: %d (%s%s)" % (
            len(nc), ", ".join(nc[:5]), ", ..." if len(nc) > 5 else ""))
    broken = [r for r in doc["results"] if r["verdict"] == "broken"]
    if broken:
        lines.append("broken (the test could not create its situation; not a verdict on the "
                     "behavior): %d" % len(broken))
        for r in broken[:10]:
            lines.append("  %s %s: %s" % (verdicts.shown(r, upper=True), r.get("item", r["test"]),
                                          r.get("message", "")))
        if len(broken) > 10:
            lines.append("  ... and %d more (summary.md lists them)" % (len(broken) - 10))
    if doc["partial"]:
        lines.append("PARTIAL run: not every item ran")
    if env.get("repeat", 1) > 1:
        lines.append("repeat %d: %d item(s) flipped verdict" % (env["repeat"], len(doc["flips"])))
        for item, counts in doc["flips"].items():
            lines.append("  FLIP %s: %s" % (item, ", ".join("%d %s" % (n, v) for v, n in counts.items())))
    refused = premise_refusals(doc)
    if refused:
        lines.append("the stack under test refused a premise in %d item(s) (a finding against "
                     "the stack, not the environment): %s" % (
                         sum(refused.values()), "; ".join("%s (%d)" % kv for kv in refused.items())))
    fixed = [r for r in doc["results"] if r["verdict"] == "xpass"]
    if fixed:
        lines.append("%d known deviation(s) pass now (xpass): remove them from %s" % (
            len(fixed), env.get("expectations") or "the expectation file"))
        for r in fixed:
            lines.append("  XPASS %s (listed: %s)" % (r["item"], r["expected"]["reason"]))
    lines.append("verdicts: " + ", ".join("%d %s" % (doc["counts"].get(v, 0), v) for v in ORDER
                                          if v not in ("xfail", "xpass") or doc["counts"].get(v)))
    rel = os.path.relpath(run_dir)
    lines.append("report: %s (also %s)" % (rel, os.path.join(os.path.dirname(rel), "latest")))
    return lines


def summary(report: dict) -> str:
    ids = catalogue.load()
    by_id = OrderedDict((i, []) for i in ids)
    for r in report["results"]:
        for i in r["ids"]:
            by_id.setdefault(i, []).append(r)
    env = report["environment"]
    c = report["counts"]
    lines = ["# sockprobe report", ""]
    if report.get("partial"):
        lines += ["**Partial run**: interrupted before every item ran.", ""]
    lines.append("Kernel %s (%s), %s %s; isolation: %s; preload: %s." % (
        env.get("kernel", "?"), env.get("machine", "?"), env.get("libc", "?"),
        env.get("libc_version", ""), env.get("isolation", "?"), env.get("preload") or "none"))
    lines += ["", "Verdicts: " + ", ".join("%d %s" % (c[v], v) for v in ORDER), ""]
    refused = premise_refusals(report)
    if refused:
        lines += ["**Premises the stack under test refused** (the kernel has them; a finding "
                  "against the stack, not the environment): " +
                  "; ".join("%s in %d item(s)" % kv for kv in refused.items()), ""]
    chapter = catalogue.chapter_of()
    current = None
    for i, rs in sorted(by_id.items(), key=lambda kv: _chapter_rank(chapter, kv[0])):
        # rows grouped by catalogue chapter (the `##` headings), one table each
        if chapter.get(i, catalogue.OTHER) != current:
            lines += [""] if current else []
            current = chapter.get(i, catalogue.OTHER)
            lines += ["### %s" % current, "",
                      "| behavior | ipv4 | ipv6 | no family | observations |",
                      "|---|---|---|---|---|"]
        cells = []
        for fam in ("ipv4", "ipv6", None):
            vs = [verdicts.shown(r) for r in rs if r["family"] == fam]
            cells.append(_cell(vs))
        obs = []
        for r in rs:
            for k, v in r.get("observations", {}).items():
                item = "%s=%s" % (k, v)
                if item not in obs:
                    obs.append(item)
        if not rs:
            cells = ["not covered", "", ""]
        lines.append("| %s | %s | %s |" % (i, " | ".join(cells), _md("; ".join(obs[:6]))))
    if report.get("flips"):
        lines += ["", "## Items whose verdict flipped between repeats", ""]
        for item, counts in report["flips"].items():
            lines.append("- `%s`: %s" % (item, ", ".join("%d %s" % (n, v) for v, n in counts.items())))
    bad = [r for r in report["results"] if r["verdict"] in BAD and r["verdict"] != "broken"]
    if bad:
        lines += ["", "## Not passing", ""]
        for r in bad:
            lines.append("- `%s` (%s): %s" % (r["item"], r["verdict"], _md(r.get("message", ""))))
    broken = [r for r in report["results"] if r["verdict"] == "broken"]
    if broken:
        lines += ["", "## Broken: could not be set up", "",
                  "The test could not create the situation its Must is about (what was "
                  "missing is named); this is neither a pass nor a failure of the behavior, "
                  "and it makes the run exit 1.", ""]
        for r in broken:
            at = r.get("observations", {}).get("broken_at")
            lines.append("- `%s`%s: %s%s" % (r["item"], " (needs %s)" % r["needs"]
                                             if r.get("needs") else "",
                                             _md(r.get("message", "")), " (%s)" % at if at else ""))
    return "\n".join(lines) + "\n"


def _chapter_rank(chapter: dict, id_: str) -> int:
    """Sort key keeping catalogue order, IDs outside the catalogue last."""
    order = list(dict.fromkeys(chapter.values()))
    return order.index(chapter[id_]) if id_ in chapter else len(order)


def _cell(seen: list) -> str:
    if not seen:
        return "-"
    worst = sorted(set(seen), key=lambda v: ORDER.index(v.split(" ")[0])
                   if v.split(" ")[0] in ORDER else 9)
    return "/".join(worst) if len(worst) > 1 else worst[0]


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def load(path: str | Path) -> dict:
    """Read a report.json, with one clear error when it is not one."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError("%s: no such report (run `make check` first?)" % p)
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError("%s: cannot read: %s" % (p, getattr(e, "strerror", e)))
    except json.JSONDecodeError as e:
        raise ReportError("%s: not JSON (%s at line %d)" % (p, e.msg, e.lineno))
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ReportError("%s: not a %s report (schema %r)" % (p, SCHEMA, got))
    return data


class ReportError(UsageError):
    pass
