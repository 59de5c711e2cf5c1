"""The committed reference matrix (docs/matrix.md, `make matrix`) agrees
with the expectation files, without running anything: every cell that
differs from the host names notes, every note quotes a line of
expectations/<target>.tsv word for word, every expectation line of a
target the matrix ran is used by a note, and nothing is UNEXPLAINED.
Also the page generator itself on small made-up reports."""
import re
from collections import OrderedDict

import pytest

from conftest import ROOT
from runner import catalogue, expect, refmatrix

DOC = ROOT / "docs" / "matrix.md"


def parse(text):
    cols, cells, notes = None, [], {}
    for line in text.splitlines():
        if line.startswith("| behavior |"):
            cols = [c.strip() for c in line.strip("|").split("|")][1:]
        elif line.startswith("| ") and cols and not line.startswith("|---"):
            row = [c.strip() for c in line.strip().strip("|").split("|")]
            for col, c in zip(cols, row[1:]):
                cells.append((row[0], col, c))
        m = refmatrix.NOTE.match(line)
        if m:
            n = m.groupdict()
            n["keys"] = re.findall(r"`([^`]+)`", n["keys"])
            notes.setdefault(m.group("ref"), []).append(n)
    return cols, cells, notes


def not_run(text):
    return set(re.findall(r"^- \*\*([\w.-]+)\*\*: not run here", text, re.M))


@pytest.fixture(scope="module")
def doc():
    if not DOC.is_file():
        pytest.fail("docs/matrix.md is missing: run `make matrix` and commit it")
    return DOC.read_text(encoding="utf-8")


def test_matrix_is_linked_from_the_readme():
    assert "docs/matrix.md" in (ROOT / "README.md").read_text()


def test_every_difference_has_its_expectation_line(doc):
    cols, cells, notes = parse(doc)
    assert cols and cols[0] == "host"
    assert "UNEXPLAINED" not in doc
    for id_, col, cell in cells:
        m = re.match(r"^\*\*(\w+(?: \(needs [\w-]+\))?)\*\* \[([^\]]+)\](?:: (.+))?$", cell)
        if not m:
            assert "**" not in cell, "%s %s: a bold cell without notes: %s" % (id_, col, cell)
            continue
        for ref in m.group(2).split(", "):
            assert ref.startswith(col + "-"), "%s %s: note %s is another target's" % (id_, col, ref)
            assert ref in notes, "%s %s: note %s is not written out" % (id_, col, ref)
        # the cell says why: the reasons of its notes, in order
        assert m.group(3) == "; ".join(notes[r][0]["reason"].replace("\\|", "/")
                                       for r in m.group(2).split(", ")), \
            "%s %s: the cell's reason is not its notes' (%s)" % (id_, col, cell)
    for ref, ns in notes.items():
        for n in ns:
            table = expect.load(expect.DIR / (n["target"] + ".tsv"))
            for key in n["keys"]:
                assert key in table, "%s: %s is not in expectations/%s.tsv" % (
                    ref, key, n["target"])
                e = table[key]
                assert (n["verdict"], n["reason"].replace("\\|", "|"), n["link"] or "") == \
                    (e.verdict, e.reason, e.link), "%s: the matrix's note differs from %s" % (
                        ref, e.where)


def test_every_expectation_line_appears_in_the_matrix(doc):
    cols, _, notes = parse(doc)
    used = {(n["target"], k) for ns in notes.values() for n in ns for k in n["keys"]}
    skipped = not_run(doc)
    for f in sorted(expect.DIR.glob("*.tsv")):
        if f.stem in skipped:
            continue
        assert f.stem in cols, "expectations/%s.tsv: no column %s in docs/matrix.md" % (
            f.name, f.stem)
        for key, e in expect.load(f).items():
            assert (f.stem, key) in used, "%s: `%s` appears nowhere in docs/matrix.md " \
                "(stale line, or the matrix is old: run `make matrix`)" % (e.where, key)


def test_matrix_rows_are_the_catalogue_grouped_by_chapter(doc):
    heads = re.findall(r"^## (.+)$", doc, re.M)
    assert heads[:len(catalogue.chapters())] == [catalogue.short(c) for c in catalogue.chapters()]
    ids = [i for i, col, _ in parse(doc)[1] if col == "host"]
    assert ids[:len(catalogue.load())] == [i for c in catalogue.chapters().values() for i in c]


def _rec(item, ids, verdict, fam="ipv4", expected=None):
    r = {"test": item.split("[")[0], "item": item, "ids": ids, "family": fam,
         "verdict": verdict, "message": ""}
    if expected:
        r["expected"] = {"verdict": expected, "reason": "x", "link": ""}
    return r


def test_render_explains_differences_and_flags_the_rest(tmp_path, monkeypatch):
    (tmp_path / "stack.tsv").write_text(
        "tcp/a[ipv6]\tfail\tthe stack deviates\thttps://example.invalid/bug\n"
        "tcp/gone\tfail\tno longer happens\n"
        "tcp/c[ipv6]\tfail\tthe stack deviates\thttps://example.invalid/bug\n")
    monkeypatch.setattr(expect, "DIR", tmp_path)
    env = {"kernel": "k", "libc": "glibc"}
    host = {"environment": env, "results": [
        _rec("tcp/a[ipv4]", ["TCP-BOUNDARY-COALESCE"], "pass"),
        _rec("tcp/a[ipv6]", ["TCP-BOUNDARY-COALESCE"], "pass", "ipv6"),
        _rec("tcp/b[ipv4]", ["TCP-BOUNDARY-SPLIT"], "pass"),
        _rec("tcp/c[ipv6]", ["TCP-BOUNDARY-COALESCE"], "pass", "ipv6")]}
    stack = {"environment": env, "results": [
        _rec("tcp/a[ipv4]", ["TCP-BOUNDARY-COALESCE"], "pass"),
        _rec("tcp/a[ipv6]", ["TCP-BOUNDARY-COALESCE"], "xfail", "ipv6", expected="fail"),
        _rec("tcp/b[ipv4]", ["TCP-BOUNDARY-SPLIT"], "skip"),
        _rec("tcp/c[ipv6]", ["TCP-BOUNDARY-COALESCE"], "xfail", "ipv6", expected="fail")]}
    runs = OrderedDict([("host", (host, None)), ("stack", (stack, None)),
                        ("gone", (None, "qemu-system-x86_64 not installed"))])
    text, unexplained = refmatrix.render(runs, None)
    assert "| TCP-BOUNDARY-COALESCE | pass | **fail** [stack-1]: the stack deviates |" in text
    # two lines with one cause share a note
    assert ("- [stack-1] expectations/stack.tsv: `tcp/a[ipv6]`, `tcp/c[ipv6]` -> fail: the "
            "stack deviates <https://example.invalid/bug>; items: `tcp/a[ipv6]`, `tcp/c[ipv6]`") in text
    assert "| TCP-BOUNDARY-SPLIT | pass | **skip** [UNEXPLAINED] |" in text
    assert "- **gone**: not run here: qemu-system-x86_64 not installed" in text
    assert any("tcp/b[ipv4] is skip, host pass" in u for u in unexplained)
    assert any("`tcp/gone`" in u and "matches no difference" in u for u in unexplained)
    assert text.index("## TCP") < text.index("## UDP")
