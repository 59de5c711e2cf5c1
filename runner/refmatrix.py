"""The reference matrix (`make matrix`): the suite on every target this
machine can run (host, UML, QEMU 6.1 and 6.12, musl, socket_wrapper,
proot, valgrind), each with its expectation file, written as
docs/matrix.md: one row per behavior ID, grouped by catalogue chapter,
one column per system, and every cell that differs from the host
explained by the line of expectations/<target>.tsv that covers it.

A difference is an item whose verdict (before expectations: an xfail
counts as the verdict it was expected to have) is not the host's. Each
cause (expectation lines with the same verdict, reason and link) is
numbered per target (`uml-1`) and explained once per chapter as
`- [uml-1] expectations/uml.tsv: `KEY`, `KEY2` -> verdict: reason <link>; items: ...`;
a difference no expectation covers is marked UNEXPLAINED and makes the
command exit 1. tests/test_matrix_doc.py checks the committed page
against the expectation files without running anything.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

from . import catalogue, config, expect, kernels, report, verdicts
from .errors import UsageError
from .matrix import run_check
from .progress import duration, step_times
from .targets import registry

ROOT = registry.ROOT
DOC = ROOT / "docs" / "matrix.md"
TIMES = kernels.CACHE.parent / "matrix-times.json"
GUESS = {e.name: e.seconds for e in registry.matrix()}


def targets() -> list:
    """[(name, runner check arguments, extra environment, why it cannot run
    here or None)], host first: the registry's matrix entries."""
    return [(e.name, config.command_line(e.options), dict(e.env), e.why_not())
            for e in registry.matrix()]


def add_arguments(p) -> None:
    p.add_argument("--reports", default=str(ROOT / "reports"), help="report directory")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per item")
    p.add_argument("--out", default=str(DOC), help="the page to write (default docs/matrix.md)")
    p.add_argument("--from", dest="from_dir", default=None, metavar="DIR",
                   help="write the page from the reports of an earlier matrix run "
                        "(DIR/<target>/latest) instead of running the targets")


class MatrixError(UsageError):
    pass


def cmd(a) -> int:
    ts = targets()
    if a.from_dir:
        base = Path(a.from_dir)
        runs = OrderedDict()
        for name, _, _, why in ts:
            p = base / name / "latest" / "report.json"
            runs[name] = (report.load(p), None) if p.is_file() else (None, why or "no report in %s"
                                                                       % p.parent.parent)
        took = None
    else:
        base = Path(a.reports) / ("matrix-" + _dt.datetime.now(_dt.timezone.utc).strftime(
            "%Y%m%d-%H%M%S"))
        runs, took = run_all(ts, base, a.timeout)
    if runs.get("host", (None,))[0] is None:
        raise MatrixError("the host run produced no report: %s" % runs.get("host", (None, "?"))[1])
    text, unexplained = render(runs, took)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    ran = [n for n, (d, _) in runs.items() if d]
    print("matrix: %d of %d targets ran (%s); page: %s" % (
        len(ran), len(runs), ", ".join(ran), os.path.relpath(out)))
    for n, (d, why) in runs.items():
        if not d:
            print("  skipped %s: %s" % (n, why))
    if unexplained:
        print("UNEXPLAINED differences from the host (add a line to expectations/<target>.tsv "
              "or fix the cause): %d" % len(unexplained))
        for u in unexplained:
            print("  " + u)
    return 1 if unexplained else 0


def run_all(ts: list, base: Path, timeout: float) -> tuple:
    times = _times()
    runnable = [t for t in ts if not t[3]]
    runs, took = OrderedDict(), {}
    for name, _, _, why in ts:
        if why:
            print("skipping %s: %s" % (name, why), flush=True)
    for n, (name, extra, env, _) in enumerate(runnable, 1):
        left = sum(times.get(t[0], 30) for t in runnable[n - 1:])
        print("[%d/%d] %s; about %s left for the matrix" % (n, len(runnable), name,
                                                             duration(left)), flush=True)
        args = ["--reports", str(base / name), "--timeout", str(timeout)] + extra
        if (expect.DIR / (name + ".tsv")).is_file():
            args += ["--expect", name]
        if not any(x in extra for x in ("--kernel",)):
            args += ["-n", "2"]
        saved = {k: os.environ.get(k) for k in env}
        tmp = None
        try:
            for k, v in env.items():
                if v is None:  # a fresh directory of its own (SOCKET_WRAPPER_DIR)
                    tmp = tempfile.mkdtemp(prefix="sockprobe-%s-" % name)
                    v = tmp
                os.environ[k] = v
            started = time.time()
            r, path = run_check(args, relay=True)
            took[name] = time.time() - started
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
        summary = [l for l in r.stdout.splitlines() if l.startswith("verdicts:")]
        print("  %-14s %5.1fs  %s" % (name, took[name], summary[0] if summary else "no report"),
              flush=True)
        if path and path.is_file():
            runs[name] = (report.load(path), None)
        else:
            err = (r.stderr.strip().splitlines() or ["exit %d, no report" % r.returncode])[-1]
            runs[name] = (None, "it ran but wrote no report: %s" % err)
    for name, _, _, why in ts:
        if why:
            runs[name] = (None, why)
    runs = OrderedDict((t[0], runs[t[0]]) for t in ts)
    _times(took)
    print("matrix wall time: %s" % duration(sum(took.values())), flush=True)
    return runs, took


def _times(took: dict | None = None) -> dict:
    return step_times(TIMES, GUESS, took)


def raw(r: dict) -> str:
    """An item's verdict before expectations were applied ("broken (needs
    ID)" for an item that depends on another ID's behavior)."""
    if r["verdict"] == "xfail":
        return r["expected"]["verdict"]
    if r["verdict"] == "xpass":
        return "pass"
    return verdicts.shown(r)


def _system(doc: dict) -> str:
    env = doc["environment"]
    return "kernel %s, %s %s" % (env.get("kernel", "?"), env.get("libc", "?"),
                                 env.get("libc_version", "")) + \
        "".join(", %s %s" % (k, env[k]) for k in ("preload", "wrap") if env.get(k))


def render(runs: "OrderedDict[str, tuple]", took: dict | None) -> tuple:
    """The page and the list of unexplained differences."""
    host = {r["item"]: r for r in runs["host"][0]["results"]}
    cols = [n for n, (d, _) in runs.items() if d]
    items = {n: {r["item"]: r for r in d["results"]} for n, (d, _) in runs.items() if d}
    tables = {n: expect.load(expect.DIR / (n + ".tsv")) if (expect.DIR / (n + ".tsv")).is_file()
              else {} for n in cols}
    # per target: cause (verdict, reason, link) -> note number; keys used
    numbers = {n: OrderedDict() for n in cols}
    cell_why = {}  # note ref -> its expectation's one-line reason (shown in the cell)
    used = {n: set() for n in cols}
    unexplained = []
    by_id = OrderedDict()  # id -> {target: [item results]}
    for n in cols:
        for r in items[n].values():
            for i in r["ids"]:
                by_id.setdefault(i, {}).setdefault(n, []).append(r)

    def key_of(n, r):
        e = expect.match(r, tables[n])
        return e.key if e else None

    def differs(n, r):
        h = host.get(r["item"])
        return h is not None and raw(h) != raw(r)

    out = ["# sockprobe reference matrix", "",
           "Generated by `make matrix` (runner/refmatrix.py); do not edit by hand. Each column "
           "is one system this project runs itself; a cell is the worst verdict of the "
           "behavior's items there (both families). A cell that differs from the host is "
           "**bold** and carries the note numbers that explain it and their one-line "
           "reasons; the notes under each "
           "chapter quote the line of `expectations/<target>.tsv` that covers each "
           "differing item (`make check EXPECT=<target>` turns those into xfail).", ""]
    for n, (d, why) in runs.items():
        if d:
            out.append("- **%s**: %s%s" % (n, _system(d), "" if not took or n not in took
                                            else " (%.0f s)" % took[n]))
        else:
            out.append("- **%s**: not run here: %s" % (n, why))
    if took:
        out += ["", "Matrix wall time: %s." % duration(sum(took.values()))]
    chapters = catalogue.chapters()
    known = {i for ids in chapters.values() for i in ids}
    extra = [i for i in by_id if i not in known]
    if extra:
        chapters = OrderedDict(chapters, **{catalogue.OTHER: extra})
    for ch, ids in chapters.items():
        out += ["", "## %s" % catalogue.short(ch), "",
                "| behavior | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        notes = OrderedDict()  # (target, note number) -> ([keys], [items])
        for i in ids:
            per = by_id.get(i, {})
            if "host" not in per:
                out.append("| %s | %s |" % (i, " | ".join("not covered" if n == "host" else "-"
                                                           for n in cols)))
                continue
            cells = []
            for n in cols:
                rs = per.get(n, [])
                if not rs:
                    cells.append("-")
                    continue
                v = _worst([raw(r) for r in rs])
                refs = []
                for r in rs:
                    if n == "host" or not differs(n, r):
                        continue
                    k = key_of(n, r)
                    if k is None:
                        refs.append("UNEXPLAINED")
                        unexplained.append("%s: %s is %s, host %s" % (
                            n, r["item"], raw(r), raw(host[r["item"]])))
                        continue
                    e = tables[n][k]
                    cause = (e.verdict, e.reason, e.link)
                    num = numbers[n].setdefault(cause, len(numbers[n]) + 1)
                    used[n].add(k)
                    ref = "%s-%d" % (n, num)
                    if ref not in refs:
                        refs.append(ref)
                        cell_why[ref] = e.reason
                    keys, its = notes.setdefault((n, num), ([], []))
                    if k not in keys:
                        keys.append(k)
                    if r["item"] not in its:
                        its.append(r["item"])
                refs.sort(key=lambda x: (x == "UNEXPLAINED", int(x.rsplit("-", 1)[-1])
                                         if x != "UNEXPLAINED" else 0))
                reasons = "; ".join(cell_why[x] for x in refs if x in cell_why).replace("|", "/")
                cells.append("**%s** [%s]%s" % (v, ", ".join(refs), ": " + reasons if reasons
                                                else "") if refs else v)
            out.append("| %s | %s |" % (i, " | ".join(cells)))
        if notes:
            out.append("")
            for (n, num), (keys, its) in sorted(notes.items(), key=lambda kv: (
                    cols.index(kv[0][0]), kv[0][1])):
                e = tables[n][keys[0]]
                out.append("- [%s-%d] expectations/%s.tsv: %s -> %s: %s%s; items: %s" % (
                    n, num, n, ", ".join("`%s`" % k for k in keys), e.verdict,
                    e.reason.replace("|", "\\|"), " <%s>" % e.link if e.link else "",
                    ", ".join("`%s`" % x for x in its)))
    # expectation lines no difference used: stale, or about an item the host fails too
    stale = [(n, k) for n in cols if n != "host" for k in tables[n] if k not in used[n]]
    for n, k in stale:
        unexplained.append("%s: expectation `%s` (%s) matches no difference from the host" % (
            n, k, tables[n][k].where))
    if unexplained:
        out += ["", "## UNEXPLAINED", ""] + ["- " + u for u in unexplained]
    return "\n".join(out) + "\n", unexplained


_worst = verdicts.worst


NOTE = re.compile(r"^- \[(?P<ref>[\w.-]+-\d+)\] expectations/(?P<target>[\w.-]+)\.tsv: "
                  r"(?P<keys>`[^`]+`(?:, `[^`]+`)*) -> (?P<verdict>\w+): (?P<reason>.*?)(?: <(?P<link>\S+)>)?; "
                  r"items: (?P<items>.*)$")
