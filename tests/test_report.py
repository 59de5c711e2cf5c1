"""Report writing: report.json schema, junit.xml, summary.md, latest link,
and clear errors for files that are not reports."""
import json
import xml.etree.ElementTree as ET

import pytest

from runner import report


def rec(test, fam, verdict, ids=("TCP-BOUNDARY-COALESCE",), **kw):
    r = {"test": test, "item": test + ("[%s]" % fam if fam else ""), "probe": test.split("/")[0],
         "ids": list(ids), "family": fam, "verdict": verdict, "message": kw.get("message", ""),
         "observations": kw.get("obs", {}), "failures": kw.get("failures", []),
         "isolation": "namespaces", "duration_s": 0.01}
    return r


RESULTS = [
    rec("tcp/a", "ipv4", "pass", obs={"read_sizes": "40"}),
    rec("tcp/a", "ipv6", "fail", message="x.c:1: n: expected 40, observed 10",
        failures=[{"at": "x.c:1", "expr": "n", "expected": "40", "observed": "10"}]),
    rec("proc/b", None, "timeout", ids=("PROC-ZOMBIE",), message="no verdict within 5s"),
    rec("udp/c", "ipv4", "skip", ids=("UDP-BOUNDARY",), message="no reason"),
]


@pytest.fixture
def written(tmp_path):
    doc = report.build(RESULTS, {"kernel": "6.1.0", "libc": "glibc"}, partial=False)
    return report.write(doc, tmp_path), tmp_path


def test_report_json_has_the_required_fields(written):
    d, _ = written
    doc = json.loads((d / "report.json").read_text())
    assert doc["schema"] == report.SCHEMA
    assert doc["environment"]["kernel"] == "6.1.0"
    assert doc["counts"] == {"pass": 1, "fail": 1, "error": 0, "timeout": 1, "broken": 0, "skip": 1}
    for r in doc["results"]:
        assert {"test", "ids", "family", "verdict", "message", "observations",
                "duration_s"} <= set(r)
    assert "DNS-BYNAME" in doc["coverage"]["not_covered"]
    assert "TCP-BOUNDARY-COALESCE" in doc["coverage"]["covered"]


def test_latest_points_at_the_newest_run(written):
    d, base = written
    assert (base / "latest").resolve() == d.resolve()
    d2 = report.write(report.build([], {}), base)
    assert (base / "latest").resolve() == d2.resolve()


def test_junit_is_valid_and_classifies_verdicts(written):
    d, _ = written
    root = ET.parse(d / "junit.xml").getroot()
    assert root.get("tests") == "4" and root.get("failures") == "1"
    assert root.get("errors") == "1" and root.get("skipped") == "1"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["a[ipv6]"].find("failure") is not None
    assert "expected 40, observed 10" in cases["a[ipv6]"].find("failure").text
    assert cases["b"].find("error").get("type") == "timeout"
    assert cases["c[ipv4]"].find("skipped") is not None


def test_summary_has_one_row_per_behavior(written):
    d, _ = written
    text = (d / "summary.md").read_text()
    row = [l for l in text.splitlines() if l.startswith("| TCP-BOUNDARY-COALESCE |")][0]
    assert "| pass | fail | - |" in row and "read_sizes=40" in row
    assert [l for l in text.splitlines() if l.startswith("| DNS-BYNAME |")][0].count("not covered")
    assert "## Not passing" in text


def test_partial_report_says_so(tmp_path):
    d = report.write(report.build(RESULTS[:1], {}, partial=True), tmp_path)
    assert json.loads((d / "report.json").read_text())["partial"] is True
    assert "Partial run" in (d / "summary.md").read_text()


@pytest.mark.parametrize("content,needle", [
    (None, "no such report"),
    ("{not json", "not JSON"),
    ('{"schema": "sockprobe-report/0"}', "not a sockprobe-report/1 report"),
    ("[1, 2]", "not a sockprobe-report/1 report"),
])
def test_loading_a_bad_report_says_what_is_wrong(tmp_path, content, needle):
    p = tmp_path / "r.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(report.ReportError, match=needle):
        report.load(p)
