"""Compare runs: two or more report.json files side by side, and baselines.

Rows are catalogue behavior IDs per family; each run's cell is the worst
verdict of the items covering that ID there. Recorded values (the
catalogue's "Record" lines) that differ between runs are listed under
their item. Output: a terminal table, Markdown and one self-contained HTML
page (no network needed to view it).
"""
from __future__ import annotations

import datetime as _dt
import html
from collections import OrderedDict
from pathlib import Path

from . import catalogue, report

RANK = {"pass": 0, "skip": 1, "broken": 2, "fail": 2, "error": 3, "timeout": 3}


def label(doc: dict, path: str) -> str:
    env = doc.get("environment", {})
    parts = [env.get("kernel", "?"), env.get("libc", "?")]
    if env.get("preload"):
        parts.append("preload " + Path(env["preload"]).name)
    if env.get("guest"):
        parts.append(env["guest"])
    return " ".join(p for p in parts if p)


def worst(verdicts):
    # On a tie of rank, fail wins over broken: a failure shows the behavior
    # deviates, broken (could not be set up) shows nothing either way.
    return max(verdicts, key=lambda v: (RANK.get(v, 9), v == "fail")) if verdicts else "-"


def table(docs: list) -> dict:
    """{(id, family): [verdict per run]} in catalogue order, and the
    differing observations {(item): {key: [value per run]}}."""
    order = list(catalogue.load())
    cells = OrderedDict()
    for i, doc in enumerate(docs):
        for r in doc["results"]:
            for id_ in r["ids"]:
                if id_ not in order:
                    order.append(id_)
                cells.setdefault((id_, r["family"]), [[] for _ in docs])[i].append(r["verdict"])
    rows = OrderedDict()
    for id_ in order:
        for fam in ("ipv4", "ipv6", None):
            if (id_, fam) in cells:
                rows[(id_, fam)] = [worst(v) for v in cells[(id_, fam)]]
    obs = OrderedDict()
    items = OrderedDict()
    for i, doc in enumerate(docs):
        for r in doc["results"]:
            items.setdefault(r["item"], [None] * len(docs))[i] = r
    for item, rs in items.items():
        keys = []
        for r in rs:
            for k in (r or {}).get("observations", {}):
                if k not in keys:
                    keys.append(k)
        for k in keys:
            vals = [(r or {}).get("observations", {}).get(k, "-") if r else "(not run)" for r in rs]
            if len(set(vals)) > 1:
                obs.setdefault(item, OrderedDict())[k] = vals
    return {"rows": rows, "observations": obs}


def differs(row: list) -> bool:
    return len(set(row)) > 1


def render_text(labels, t) -> str:
    w = max([len("behavior [family]")] + [len("%s [%s]" % (i, f or "-")) for i, f in t["rows"]])
    cols = [max(6, min(len(l), 28)) for l in labels]
    out = ["%-*s  %s" % (w, "behavior [family]", "  ".join("%-*s" % (c, l[:c]) for c, l in zip(cols, labels)))]
    for (i, f), row in t["rows"].items():
        mark = " <" if differs(row) else ""
        out.append("%-*s  %s%s" % (w, "%s [%s]" % (i, f or "-"),
                                   "  ".join("%-*s" % (c, v) for c, v in zip(cols, row)), mark))
    if t["observations"]:
        out.append("")
        out.append("recorded values that differ:")
        for item, kv in t["observations"].items():
            for k, vals in kv.items():
                out.append("  %s %s: %s" % (item, k, " | ".join(vals)))
    return "\n".join(out) + "\n"


def render_md(labels, paths, t) -> str:
    out = ["# sockprobe comparison", ""]
    for n, (l, p) in enumerate(zip(labels, paths), 1):
        out.append("- run %d: %s (`%s`)" % (n, l, p))
    out += ["", "| behavior | family | " + " | ".join("run %d" % n for n in range(1, len(labels) + 1)) + " |",
            "|---|---|" + "---|" * len(labels)]
    for (i, f), row in t["rows"].items():
        cells = ["**%s**" % v if differs(row) else v for v in row]
        out.append("| %s | %s | %s |" % (i, f or "-", " | ".join(cells)))
    if t["observations"]:
        out += ["", "## Recorded values that differ", "",
                "| item | value | " + " | ".join("run %d" % n for n in range(1, len(labels) + 1)) + " |",
                "|---|---|" + "---|" * len(labels)]
        for item, kv in t["observations"].items():
            for k, vals in kv.items():
                out.append("| `%s` | %s | %s |" % (item, k, " | ".join(v.replace("|", "\\|") for v in vals)))
    return "\n".join(out) + "\n"


CSS = """body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:90%}
tr.diff td{background:#fff4cc}.pass{color:#176f2c}.fail,.error,.timeout{color:#b00020;font-weight:bold}
.skip{color:#666}code{font-size:90%}"""


def render_html(labels, paths, t) -> str:
    e = html.escape
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>sockprobe comparison</title>",
           "<style>%s</style></head><body><h1>sockprobe comparison</h1><ul>" % CSS]
    for n, (l, p) in enumerate(zip(labels, paths), 1):
        out.append("<li>run %d: %s (<code>%s</code>)</li>" % (n, e(l), e(str(p))))
    ndiff = sum(differs(r) for r in t["rows"].values())
    out.append("</ul><p>%d of %d rows differ (highlighted).</p><table><tr><th>behavior</th><th>family</th>%s</tr>"
               % (ndiff, len(t["rows"]), "".join("<th>run %d</th>" % n for n in range(1, len(labels) + 1))))
    for (i, f), row in t["rows"].items():
        out.append("<tr%s><td>%s</td><td>%s</td>%s</tr>" % (
            " class='diff'" if differs(row) else "", e(i), e(f or "-"),
            "".join("<td class='%s'>%s</td>" % (e(v), e(v)) for v in row)))
    out.append("</table>")
    if t["observations"]:
        out.append("<h2>Recorded values that differ</h2><table><tr><th>item</th><th>value</th>%s</tr>"
                   % "".join("<th>run %d</th>" % n for n in range(1, len(labels) + 1)))
        for item, kv in t["observations"].items():
            for k, vals in kv.items():
                out.append("<tr class='diff'><td><code>%s</code></td><td>%s</td>%s</tr>" % (
                    e(item), e(k), "".join("<td>%s</td>" % e(v) for v in vals)))
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def compare(paths: list, out_dir: Path) -> tuple:
    """Write compare.md and compare.html; return (text, any_verdict_differs, dir)."""
    if len(paths) < 2:
        raise report.ReportError("compare needs at least two reports")
    docs = [report.load(p) for p in paths]
    labels = [label(d, p) for d, p in zip(docs, paths)]
    t = table(docs)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    d = out_dir / ("compare-" + stamp)
    d.mkdir(parents=True)
    (d / "compare.md").write_text(render_md(labels, paths, t))
    (d / "compare.html").write_text(render_html(labels, paths, t))
    numbered = ["%d: %s" % (n, l) for n, l in enumerate(labels, 1)]
    return render_text(numbered, t), any(differs(r) for r in t["rows"].values()), d


def against_baseline(current: dict, baseline: dict) -> tuple:
    """Items worse than in the baseline, and known deviations (not passing
    in both). Items the baseline lacks count as new: worse if not passing."""
    base = {r["item"]: r for r in baseline["results"]}
    worse, known = [], []
    for r in current["results"]:
        b = base.get(r["item"])
        bv = b["verdict"] if b else "pass"
        if RANK.get(r["verdict"], 9) >= 2 and RANK.get(bv, 9) >= 2:
            known.append((r["item"], bv, r["verdict"]))
        elif RANK.get(r["verdict"], 9) > RANK.get(bv, 9) and RANK.get(r["verdict"], 9) >= 2:
            worse.append((r["item"], bv, r["verdict"]))
    return worse, known
