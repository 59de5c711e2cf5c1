"""Compare systems: report.json files side by side, and baselines.

Reports are grouped into systems by what they ran on (kernel, libc,
preload, guest): several reports of one system (REPEAT= runs, or the same
command run twice) tell run-to-run variation from real differences. Rows
are catalogue behavior IDs per family; a system's cell is the worst
verdict of the items covering that ID there, or "varies (a/b)" when its
runs disagree. A recorded value (the catalogue's "Record" lines) is
reported as differing only when it is stable within every system that
has it and differs between systems; values that vary within one system
are listed apart as "varies".

The first lines say how many behaviors differ and which; then come rows
whose verdicts differ, then stable values that differ, then what varies
within a system; identical rows are folded. Output: a terminal text,
Markdown and one self-contained HTML page (no network needed to view it).
"""
from __future__ import annotations

import datetime as _dt
import html
from collections import OrderedDict
from pathlib import Path

from . import catalogue, report, verdicts

RANK = verdicts.RANK
NOT_RUN = "(not run)"


def name(doc: dict) -> str:
    """A system's short name, as the registry names targets: the guest or
    remote it ran on ("uml", "qemu 6.1", "gvisor"), a host preset it
    matches ("musl", "proot", "socket_wrapper", "qemu-user aarch64"),
    otherwise "host" with what was loaded into or around the probes."""
    from .targets import registry
    env = doc.get("environment", {})
    if env.get("guest"):
        return str(env["guest"])
    if env.get("target") == "bundle":
        return "bundle"
    have = {"libc": env.get("libc") if env.get("libc") == "musl" else None,
            "preload": env.get("preload"), "arch": env.get("arch") if env.get("emulator")
            else None, "wrap": (str(env.get("wrap") or "").split() or [None])[0]}
    for e in registry.ENTRIES:
        if e.target == "host:Host" and e.options and all(
                have.get(k) == (v.split()[0] if k == "wrap" else v)
                for k, v in e.options.items()) and \
                sum(1 for v in have.values() if v) == len(e.options):
            return e.label
    extra = [("preload " + Path(have["preload"]).name) if have["preload"] else None,
             have["wrap"], have["libc"], have["arch"]]
    return " ".join(["host"] + [x for x in extra if x])


def names(docs: list) -> list:
    """Short names of systems (docs: one report each), made unique by the
    kernel where two would read the same."""
    short = [name(d) for d in docs]
    out = []
    for s, d in zip(short, docs):
        if short.count(s) > 1:
            s = "%s (%s)" % (s, d.get("environment", {}).get("kernel", "?"))
        out.append(s)
    for i, s in enumerate(out):   # still the same: number them
        if out.count(s) > 1:
            out[i] = "%s #%d" % (s, out[:i + 1].count(s))
    return out


def reason(r: dict) -> str:
    """A result's one-line reason: the expectation's for a known
    deviation, otherwise the item's message."""
    if r["verdict"] in ("xfail", "xpass") and r.get("expected"):
        text = r["expected"].get("reason", "")
    elif r["verdict"] in ("pass",):
        text = ""
    else:
        text = r.get("message") or ""
    text = " ".join(text.split())
    return text if len(text) <= 140 else text[:137] + "..."


def label(doc: dict, path: str = "") -> str:
    env = doc.get("environment", {})
    parts = [env.get("kernel", "?"), env.get("libc", "?")]
    if env.get("preload"):
        parts.append("preload " + Path(env["preload"]).name)
    if env.get("wrap"):
        parts.append("wrap " + str(env["wrap"]))
    if env.get("arch"):
        parts.append(str(env["arch"]))
    if env.get("guest"):
        parts.append(env["guest"])
    return " ".join(str(p) for p in parts if p)


worst = verdicts.worst


def _repeats(doc: dict) -> list:
    """A REPEAT=N report holds N runs: one document per repeat."""
    reps = sorted({r.get("repeat", 0) for r in doc["results"]})
    if len(reps) < 2:
        return [doc]
    return [dict(doc, results=[r for r in doc["results"] if r.get("repeat", 0) == n])
            for n in reps]


def systems(docs: list, paths: list) -> "OrderedDict[str, list]":
    """{system label: [(path, doc), ...]} in the order first seen; a
    REPEAT report counts as one run per repeat."""
    out = OrderedDict()
    for p, d in zip(paths, docs):
        for one in _repeats(d):
            out.setdefault(label(d, p), []).append((p, one))
    return out


def _cell(values: list) -> tuple:
    """One system's cell from its runs' values: (text, stable)."""
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    if len(seen) == 1:
        return seen[0], True
    return "varies (%s)" % "/".join(seen), False


def table(groups: "OrderedDict[str, list]") -> dict:
    """Rows of verdicts and of recorded values, each with its class:
    "differs" (stable and different between systems), "varies" (some
    system disagrees with itself) or "same"."""
    order = list(catalogue.load())
    n = len(groups)
    by_row = OrderedDict()     # (id, fam) -> [[worst verdict per run] per system]
    why = {}                   # (id, fam) -> [the worst item's reason per system]
    values = OrderedDict()     # (item, key) -> [[value per run] per system]
    for s, runs in enumerate(groups.values()):
        for r_i, (_, doc) in enumerate(runs):
            per_cell = {}
            for r in doc["results"]:
                for id_ in r["ids"]:
                    if id_ not in order:
                        order.append(id_)
                    per_cell.setdefault((id_, r["family"]), []).append(r)
            for key, rs in per_cell.items():
                v = worst([verdicts.shown(r) for r in rs])
                by_row.setdefault(key, [[] for _ in range(n)])[s].append(v)
                bad = [reason(r) for r in rs if verdicts.shown(r) == v and reason(r)]
                if bad:
                    why.setdefault(key, [""] * n)[s] = bad[0]
    for runs in groups.values():
        for _, doc in runs:
            for r in doc["results"]:
                for k in r.get("observations", {}):
                    values.setdefault((r["item"], k), [[] for _ in range(n)])
    for s, runs in enumerate(groups.values()):
        for _, doc in runs:
            by_item = {r["item"]: r for r in doc["results"]}
            for (item, k), cols in values.items():
                if item in by_item:
                    cols[s].append(by_item[item].get("observations", {}).get(k, "-"))

    def classify(cols):
        cells = [_cell(c) if c else (NOT_RUN, True) for c in cols]
        stable = [t for t, ok in cells if ok and t != NOT_RUN]
        if not all(ok for _, ok in cells):
            kind = "varies"
        elif len(set(stable)) > 1:
            kind = "differs"
        else:
            kind = "same"
        # a verdict row that differs between systems differs, even when
        # another system varies
        if kind == "varies" and len(set(stable)) > 1:
            kind = "differs"
        return [t for t, _ in cells], kind

    rows = OrderedDict()
    for id_ in order:
        for fam in ("ipv4", "ipv6", None):
            if (id_, fam) in by_row:
                rows[(id_, fam)] = classify(by_row[(id_, fam)])
    for key in sorted(by_row, key=lambda k: (order.index(k[0]), str(k[1]))):
        if key not in rows:
            rows[key] = classify(by_row[key])
    item_ids = {}
    for runs in groups.values():
        for _, doc in runs:
            for r in doc["results"]:
                item_ids.setdefault(r["item"], r["ids"])
    obs = OrderedDict()
    for key, cols in values.items():
        cells, kind = classify(cols)
        if kind != "same":
            obs[key] = (cells, kind)
    return {"rows": rows, "observations": obs, "item_ids": item_ids, "why": why}


def chapter(t: dict, key) -> str:
    """The catalogue chapter of a row: (ID, family) or (item, value key)."""
    of = _chapters()
    if key in t["rows"]:
        return of.get(key[0], catalogue.OTHER)
    ids = t.get("item_ids", {}).get(key[0], [])
    return of.get(ids[0], catalogue.OTHER) if ids else catalogue.OTHER


def _chapters() -> dict:
    return catalogue.chapter_of()


def by_chapter(t: dict, rows: list) -> list:
    """rows (key, value) grouped by catalogue chapter, in catalogue order
    (stable within a chapter): [(chapter, [(key, value), ...]), ...]."""
    order = list(catalogue.chapters()) + [catalogue.OTHER]
    out = OrderedDict()
    for k, v in rows:
        out.setdefault(chapter(t, k), []).append((k, v))
    return sorted(out.items(), key=lambda cv: order.index(cv[0]) if cv[0] in order else len(order))


def headline(t: dict) -> list:
    """The first screen: how many behaviors differ and which."""
    ids = []
    for (id_, _), (_, kind) in t["rows"].items():
        if kind == "differs" and id_ not in ids:
            ids.append(id_)
    stable = sum(1 for _, kind in t["observations"].values() if kind == "differs")
    varies = sum(1 for _, kind in list(t["rows"].values()) + list(t["observations"].values())
                 if kind == "varies")
    out = ["%d behavior%s differ%s between systems%s" % (
        len(ids), "" if len(ids) == 1 else "s", "s" if len(ids) == 1 else "",
        ": " + ", ".join(ids) if ids else "")]
    out.append("%d recorded value%s differ%s (stable within each system); "
               "%d row%s vary within a system" % (
                   stable, "" if stable == 1 else "s", "s" if stable == 1 else "",
                   varies, "" if varies == 1 else "s"))
    return out


def differs(row) -> bool:
    """A row's verdicts differ between systems (row: (cells, kind) or a
    plain list of cells)."""
    if isinstance(row, tuple):
        return row[1] == "differs"
    return len(set(row)) > 1


def _sections(t: dict):
    rows = t["rows"]
    return ([(k, v) for k, v in rows.items() if v[1] == "differs"],
            [(k, v) for k, v in t["observations"].items() if v[1] == "differs"],
            [(k, v) for k, v in list(rows.items()) + list(t["observations"].items())
             if v[1] == "varies"],
            [(k, v) for k, v in rows.items() if v[1] == "same"])


def _reasons(t: dict, key, cols) -> list:
    """(system name, reason) for each cell of a differing row that has one."""
    why = t.get("why", {}).get(key, [])
    return [(c, w) for c, w in zip(cols, why) if w]


def render_text(cols, described, t) -> str:
    """cols: the systems' short names; described: a line about each."""
    diff, vals, varies, same = _sections(t)
    out = headline(t) + [""] + ["%s: %s" % (c, d) for c, d in zip(cols, described)]
    w = max([len("behavior [family]")] + [len("%s [%s]" % (i, f or "-")) for i, f in t["rows"]])
    width = [max(6, min(len(c), 28)) for c in cols]
    head = "%-*s  %s" % (w, "behavior [family]", "  ".join(
        "%-*s" % (c, n[:c]) for n, c in zip(cols, width)))
    if diff:
        out += ["", "verdicts that differ:", head]
        for ch, rows in by_chapter(t, diff):
            out.append("-- %s" % catalogue.short(ch))
            for (i, f), (row, _) in rows:
                out.append("%-*s  %s <" % (w, "%s [%s]" % (i, f or "-"),
                                           "  ".join("%-*s" % (c, v) for c, v in zip(width, row))))
                out += ["%-*s    %s: %s" % (w, "", c, why) for c, why in
                        _reasons(t, (i, f), cols)]
    if vals:
        out += ["", "recorded values that differ:"]
        for ch, rows in by_chapter(t, vals):
            out.append("-- %s" % catalogue.short(ch))
            for (item, k), (row, _) in rows:
                out.append("  %s %s: %s" % (item, k, " | ".join(row)))
    if varies:
        out += ["", "varies within a system (run-to-run, not a difference):"]
        for ch, rows in by_chapter(t, varies):
            out.append("-- %s" % catalogue.short(ch))
            for key, (row, _) in rows:
                name = "%s [%s]" % (key[0], key[1] or "-") if key in t["rows"] else "%s %s" % key
                out.append("  %s: %s" % (name, " | ".join(row)))
    out += ["", "%d identical row%s folded" % (len(same), "" if len(same) == 1 else "s")]
    return "\n".join(out) + "\n"


def render_md(cols, described, paths, t) -> str:
    diff, vals, varies, same = _sections(t)
    n = len(cols)
    out = ["# sockprobe comparison", ""] + ["**%s**" % l for l in headline(t)[:1]] + \
        headline(t)[1:] + [""]
    for c, l, ps in zip(cols, described, paths):
        out.append("- **%s**: %s (%s)" % (c, l, ", ".join("`%s`" % p for p in ps)))
    heads = [c.replace("|", "\\|") for c in cols]

    def verdict_table(rows, bold):
        lines = []
        for ch, group in by_chapter(t, rows):  # one table per catalogue chapter
            lines += ["", "### %s" % catalogue.short(ch), "",
                      "| behavior | family | " + " | ".join(heads) + " |", "|---|---|" + "---|" * n]
            for (i, f), (row, _) in group:
                why = t.get("why", {}).get((i, f), [""] * n) if bold else [""] * n
                cells = [("**%s**" % v if bold else v) + (": " + _mdx(w) if w else "")
                         for v, w in zip(row, why)]
                lines.append("| %s | %s | %s |" % (i, f or "-", " | ".join(cells)))
        return lines

    if diff:
        out += ["", "## Verdicts that differ"] + verdict_table(diff, True)
    if vals:
        out += ["", "## Recorded values that differ"]
        for ch, group in by_chapter(t, vals):
            out += ["", "### %s" % catalogue.short(ch), "",
                    "| item | value | " + " | ".join(heads) + " |", "|---|---|" + "---|" * n]
            for (item, k), (row, _) in group:
                out.append("| `%s` | %s | %s |" % (item, k, " | ".join(_mdx(v) for v in row)))
    if varies:
        out += ["", "## Varies within a system"]
        for ch, group in by_chapter(t, varies):
            out += ["", "### %s" % catalogue.short(ch), "",
                    "| row | " + " | ".join(heads) + " |", "|---|" + "---|" * n]
            for key, (row, _) in group:
                name = "%s [%s]" % (key[0], key[1] or "-") if key in t["rows"] else "`%s` %s" % key
                out.append("| %s | %s |" % (name, " | ".join(_mdx(v) for v in row)))
    out += ["", "<details><summary>%d identical rows</summary>" % len(same)]
    out += verdict_table(same, False) + ["", "</details>"]
    return "\n".join(out) + "\n"


def _mdx(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


CSS = """body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:90%}
tr.diff td{background:#fff4cc}tr.varies td{background:#eef}.pass{color:#176f2c}
.fail,.error,.timeout,.broken{color:#b00020;font-weight:bold}.skip{color:#666}code{font-size:90%}
.why{display:block;color:#333;font-weight:normal;font-size:85%}#summary{font-size:120%}"""


def render_html(cols, described, paths, t) -> str:
    e = html.escape
    diff, vals, varies, same = _sections(t)
    n = len(cols)
    ths = "".join("<th>%s</th>" % e(c) for c in cols)
    head = headline(t)
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>sockprobe comparison</title>",
           "<style>%s</style></head><body><h1>sockprobe comparison</h1>" % CSS,
           "<p id='summary'>%s</p><p>%s</p><ul>" % (e(head[0]), e(head[1]))]
    for c, l, ps in zip(cols, described, paths):
        out.append("<li><b>%s</b>: %s (%s)</li>" % (e(c), e(l), ", ".join(
            "<code>%s</code>" % e(str(p)) for p in ps)))
    out.append("</ul>")

    def rows_html(rows, cls):
        for ch, group in by_chapter(t, rows):
            out.append("<tr class='chapter'><th colspan='%d'>%s</th></tr>" % (
                n + 2, e(catalogue.short(ch))))
            rows_one(group, cls)

    def rows_one(rows, cls):
        for (i, f), (row, _) in rows:
            why = t.get("why", {}).get((i, f), [""] * n) if cls == "diff" else [""] * n
            out.append("<tr class='%s' data-id='%s'><td>%s</td><td>%s</td>%s</tr>" % (
                cls, e(i), e(i), e(f or "-"),
                "".join("<td class='%s'>%s%s</td>" % (
                    e(v.split(" ")[0]), e(v), "<span class='why'>%s</span>" % e(w) if w else "")
                    for v, w in zip(row, why))))

    out.append("<table id='verdicts'><tr><th>behavior</th><th>family</th>%s</tr>" % ths)
    rows_html(diff, "diff")
    rows_html([(k, v) for k, v in varies if k in t["rows"]], "varies")
    out.append("</table>")
    if vals or any(k not in t["rows"] for k, _ in varies):
        out.append("<h2>Recorded values</h2><table id='values'><tr><th>item</th><th>value</th>%s</tr>"
                   % ths)
        for cls, rows in (("diff", vals), ("varies", [(k, v) for k, v in varies if k not in t["rows"]])):
            rows = [kv for _, group in by_chapter(t, rows) for kv in group]
            for (item, k), (row, _) in rows:
                out.append("<tr class='%s'><td><code>%s</code></td><td>%s</td>%s</tr>" % (
                    cls, e(item), e(k), "".join("<td>%s</td>" % e(v) for v in row)))
        out.append("</table>")
    out.append("<details id='same'><summary>%d identical rows</summary><table>"
               "<tr><th>behavior</th><th>family</th>%s</tr>" % (len(same), ths))
    rows_html(same, "same")
    out.append("</table></details></body></html>")
    return "\n".join(out) + "\n"


def compare(paths: list, out_dir: Path) -> tuple:
    """Write compare.md and compare.html; return (text, any_verdict_differs
    between systems, dir). Each system is named as the registry names
    targets (host, uml, qemu 6.1, gvisor, ...), and each cell of a row
    that differs carries its one-line reason."""
    if len(paths) < 2:
        raise report.ReportError("compare needs at least two reports")
    docs = [report.load(p) for p in paths]
    groups = systems(docs, [str(p) for p in paths])
    cols = names([runs[0][1] for runs in groups.values()])
    described = ["%s, %d run%s" % (l, len(runs), "" if len(runs) == 1 else "s")
                 for l, runs in groups.items()]
    grouped_paths = [list(OrderedDict.fromkeys(p for p, _ in runs)) for runs in groups.values()]
    t = table(groups)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    d = out_dir / ("compare-" + stamp)
    d.mkdir(parents=True)
    (d / "compare.md").write_text(render_md(cols, described, grouped_paths, t))
    (d / "compare.html").write_text(render_html(cols, described, grouped_paths, t))
    return render_text(cols, described, t), any(differs(r) for r in t["rows"].values()), d


# ---- baselines -------------------------------------------------------------

CLASSES = ("new failure", "fixed", "new test", "gone", "unchanged")


def _bad(v) -> bool:
    return RANK.get(v, 9) >= 2 and v != "xfail"


def against_baseline(current: dict, baseline: dict) -> list:
    """Every item of either run classified against the baseline:
    [(class, item, baseline verdict or None, current verdict or None)],
    changes first. "new failure": failing now and not failing in the
    baseline (a new test that fails is one too); "fixed": failing in the
    baseline, not now; "new test"/"gone": only in one of them; otherwise
    "unchanged" (also a failure in both: a known deviation)."""
    base = {r["item"]: r["verdict"] for r in baseline["results"]}
    now = {r["item"]: r["verdict"] for r in current["results"]}
    out = []
    for item in sorted(set(base) | set(now)):
        b, c = base.get(item), now.get(item)
        if c is None:
            cls = "gone"
        elif _bad(c) and (b is None or not _bad(b)):
            cls = "new failure"
        elif b is None:
            cls = "new test"
        elif _bad(b) and not _bad(c) and c != "skip":
            cls = "fixed"
        else:
            cls = "unchanged"
        out.append((cls, item, b, c))
    return sorted(out, key=lambda x: (CLASSES.index(x[0]), x[1]))
