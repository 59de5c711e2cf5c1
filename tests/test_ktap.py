"""results.ktap read by a real TAP consumer: Perl's prove (TAP::Parser)
must parse it without errors, at the top level (one test per behavior ID)
and inside every subtest (one test per item), and its counts must match
the report's."""
import re
import shutil
import subprocess

import pytest

from runner import ktap, report
from test_report import rec

RESULTS = [
    rec("tcp/a", "ipv4", "pass"),
    rec("tcp/a", "ipv6", "fail", message="x.c:1: n: expected 40, observed 10 # not a directive",
        failures=[{"at": "x.c:1", "expr": "n", "expected": "40", "observed": "10"}]),
    rec("tcp/b", "ipv4", "pass", ids=("TCP-BOUNDARY-SPLIT", "TCP-BOUNDARY-COALESCE")),
    rec("proc/b", None, "timeout", ids=("PROC-ZOMBIE",), message="no verdict within 5s"),
    rec("proc/c", None, "error", ids=("PROC-FORK-RETURNS",), message="probe killed by SIGSEGV"),
    rec("tcp/d", "ipv4", "broken", ids=("TCP-CLOSE-FLUSHES-OUTPUT",),
        message="TIOCOUTQ is not supported"),
    rec("udp/c", "ipv4", "skip", ids=("UDP-BOUNDARY",), message="no IPv6\nhere"),
    rec("udp/c", "ipv6", "skip", ids=("UDP-BOUNDARY",), message="no IPv6"),
]

needs_prove = pytest.mark.skipif(shutil.which("prove") is None,
                                 reason="prove (Debian package perl) is not installed")


def tap_counts(text: str, tmp_path, name: str) -> dict:
    """Run prove over a TAP text; return its verdict and counts."""
    f = tmp_path / name
    f.write_text(text)
    r = subprocess.run(["prove", "-v", "-e", "cat", str(f)], capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert "Parse errors" not in out, out
    tests = int(re.search(r"Tests=(\d+)", out).group(1))
    failed = re.search(r"Failed (\d+)/(\d+) subtests", out)
    skipped = len(re.findall(r"^ok \d+ .*# skip", out, re.M | re.I))
    return {"rc": r.returncode, "tests": tests, "failed": int(failed.group(1)) if failed else 0,
            "skipped": skipped}


def subtests(text: str) -> dict:
    """{ID: the subtest's own KTAP lines, unindented}."""
    out, cur = {}, None
    for line in text.splitlines():
        if line.startswith(ktap.INDENT + "# Subtest: "):
            cur = line.split(": ", 1)[1]
            out[cur] = []
        elif line.startswith(ktap.INDENT) and cur:
            out[cur].append(line[len(ktap.INDENT):])
        elif cur and line:
            cur = None
    return out


@needs_prove
def test_prove_reads_the_top_level_and_counts_match(tmp_path):
    doc = report.build(RESULTS, {"kernel": "6.1.0", "libc": "glibc"})
    text = ktap.render(doc)
    assert text.startswith("KTAP version 1\n")
    ids = {i for r in RESULTS for i in r["ids"]}
    bad_ids = {i for r in RESULTS if r["verdict"] in report.BAD for i in r["ids"]}
    c = tap_counts(text, tmp_path, "top.ktap")
    assert (c["tests"], c["failed"], c["skipped"]) == (len(ids), len(bad_ids), 1)
    assert c["rc"] != 0


@needs_prove
def test_prove_reads_every_subtest_and_item_counts_match(tmp_path):
    doc = report.build(RESULTS, {"kernel": "6.1.0", "libc": "glibc"})
    subs = subtests(ktap.render(doc))
    for id_, lines in subs.items():
        rs = [r for r in RESULTS if id_ in r["ids"]]
        c = tap_counts("\n".join(lines) + "\n", tmp_path, "sub.ktap")
        assert c["tests"] == len(rs), id_
        assert c["failed"] == sum(r["verdict"] in report.BAD for r in rs), id_
        assert c["skipped"] == sum(r["verdict"] == "skip" for r in rs), id_


def test_directives_and_diagnostics():
    text = ktap.render(report.build(RESULTS, {"kernel": "6.1.0"}))
    assert "  not ok 1 proc/b # TIMEOUT" in text
    assert "  not ok 1 proc/c # ERROR" in text
    assert "  not ok 1 tcp/d[ipv4] # BROKEN" in text
    assert "  # TIOCOUTQ is not supported" in text
    assert "  # x.c:1: n: expected 40, observed 10" in text
    assert "ok 7 UDP-BOUNDARY # SKIP no IPv6; no IPv6 here" in text or \
        re.search(r"^ok \d+ UDP-BOUNDARY # SKIP no IPv6; no IPv6 here$", text, re.M)
    # '#' inside a message never becomes a directive
    assert "# not a directive" not in text


def test_every_run_directory_has_results_ktap(tmp_path):
    d = report.write(report.build(RESULTS, {"kernel": "6.1.0"}), tmp_path)
    assert (d / "results.ktap").read_text().startswith("KTAP version 1\n")


@needs_prove
def test_a_real_run_is_read_by_prove(tmp_path):
    """The suite's own report for a small selection, through prove."""
    from conftest import ROOT
    import sys
    r = subprocess.run([sys.executable, "-m", "runner", "check", "-q", "--reports", str(tmp_path),
                        "tcp/tcp_writes_coalesce_into_one_read", "proc"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = report.load(str(tmp_path / "latest" / "report.json"))
    text = (tmp_path / "latest" / "results.ktap").read_text()
    c = tap_counts(text, tmp_path, "run.ktap")
    ids = {i for x in doc["results"] for i in x["ids"]}
    assert (c["rc"], c["tests"], c["failed"]) == (0, len(ids), 0)
