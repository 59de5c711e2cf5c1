"""Known deviations as data (expectations/*.tsv, runner/expect.py): a listed
deviation is xfail and passes the run, a listed one that passes now is
xpass (listed as fixed), anything else is judged as usual; malformed
files are one clear error."""
import json
import os
import subprocess
import sys

import pytest

from conftest import FAULTLIB, ROOT
from runner import expect, ktap, report
from test_report import rec

COALESCE = "tcp/tcp_writes_coalesce_into_one_read"


def table(tmp_path, text):
    p = tmp_path / "t.tsv"
    p.write_text(text)
    return expect.load(p)


def test_listed_deviation_is_xfail_with_its_reason(tmp_path):
    t = table(tmp_path, "# comment\nTCP-BOUNDARY-COALESCE\tfail\treads return one write\thttps://x\n")
    r = expect.apply(rec("tcp/a", "ipv4", "fail", message="m"), t)
    assert r["verdict"] == "xfail"
    assert r["expected"] == {"verdict": "fail", "reason": "reads return one write", "link": "https://x"}


def test_listed_deviation_that_passes_is_xpass(tmp_path):
    t = table(tmp_path, "tcp/a\tfail\treason\n")
    assert expect.apply(rec("tcp/a", "ipv6", "pass"), t)["verdict"] == "xpass"


def test_another_failure_stays_a_failure(tmp_path):
    t = table(tmp_path, "tcp/a\tfail\treason\n")
    assert expect.apply(rec("tcp/a", "ipv4", "timeout"), t)["verdict"] == "timeout"
    assert expect.apply(rec("tcp/b", "ipv4", "fail"), t)["verdict"] == "fail"


def test_the_most_specific_key_wins(tmp_path):
    t = table(tmp_path, "tcp/a[ipv6]\tskip\tno v6 here\nTCP-BOUNDARY-COALESCE\tfail\tall\n")
    assert expect.apply(rec("tcp/a", "ipv6", "skip"), t)["verdict"] == "xfail"
    assert expect.apply(rec("tcp/a", "ipv6", "fail"), t)["verdict"] == "fail"
    assert expect.apply(rec("tcp/a", "ipv4", "fail"), t)["verdict"] == "xfail"


@pytest.mark.parametrize("text,words", [
    ("tcp/a\tbad\treason\n", "expected verdict must be one of"),
    ("tcp/a\tfail\n", "want 'item-or-ID<TAB>verdict<TAB>reason"),
    ("tcp/a\tfail\tr\ntcp/a\tskip\tr\n", "listed twice"),
])
def test_malformed_lines_are_one_clear_error(tmp_path, text, words):
    p = tmp_path / "bad.tsv"
    p.write_text(text)
    with pytest.raises(expect.ExpectError, match=words.replace("(", r"\(").replace("[", r"\[")):
        expect.load(p)


def test_unknown_target_names_the_known_ones():
    with pytest.raises(expect.ExpectError, match="no expectations for 'nosuch'"):
        expect.resolve("nosuch")


def test_shipped_expectation_files_parse():
    for f in sorted(expect.DIR.glob("*.tsv")):
        t = expect.load(f)
        # a target with no deviation says so in a comment (proot.tsv)
        assert t or "# None" in f.read_text(), f
        for e in t.values():
            assert len(e.reason) > 15, "%s: say what the stack does differently" % e.where


def test_ktap_and_junit_know_xfail_and_xpass(tmp_path):
    t = table(tmp_path, "tcp/a\tfail\tknown\n")
    rs = [expect.apply(rec("tcp/a", "ipv4", "fail"), t), expect.apply(rec("tcp/a", "ipv6", "pass"), t)]
    doc = report.build(rs, {"kernel": "x"})
    text = ktap.render(doc)
    assert "  ok 1 tcp/a[ipv4] # XFAIL known" in text
    assert "ok 1 TCP-BOUNDARY-COALESCE" in text
    assert doc["counts"]["xfail"] == 1 and doc["counts"]["xpass"] == 1
    d = report.write(doc, tmp_path / "r")
    assert "XPASS tcp/a[ipv6]" in "\n".join(report.terminal_summary(doc, d))


def run_check(tmp_path, fault, expectations, *sel):
    f = tmp_path / "e.tsv"
    f.write_text(expectations)
    env = dict(os.environ, SOCKPROBE_FAULT=fault, SOCKPROBE_WAIT_MS="500")
    r = subprocess.run([sys.executable, "-m", "runner", "check", "-q", "--preload", str(FAULTLIB),
                        "--expect", str(f), "--reports", str(tmp_path / "reports")] + list(sel),
                       cwd=ROOT, env=env, capture_output=True, text=True)
    doc = json.loads((tmp_path / "reports" / "latest" / "report.json").read_text())
    return r.returncode, {x["item"]: x["verdict"] for x in doc["results"]}, r.stdout


def test_a_run_with_its_deviation_listed_exits_0(tmp_path):
    rc, v, out = run_check(tmp_path, "read_caps_at_10",
                           "TCP-BOUNDARY-COALESCE\tfail\treads return at most 10 bytes\n", COALESCE)
    assert set(v.values()) == {"xfail"} and rc == 0, out


def test_an_unlisted_deviation_still_fails_the_run(tmp_path):
    rc, v, out = run_check(tmp_path, "read_caps_at_10",
                           "TCP-BOUNDARY-SPLIT\tfail\tsomething else\n", COALESCE)
    assert set(v.values()) == {"fail"} and rc == 1, out


def test_a_fixed_deviation_is_listed_and_passes(tmp_path):
    rc, v, out = run_check(tmp_path, "", "TCP-BOUNDARY-COALESCE\tfail\tused to cap reads\n", COALESCE)
    assert set(v.values()) == {"xpass"} and rc == 0
    assert "XPASS" in out


def test_expect_with_a_bad_file_is_a_usage_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "runner", "check", "--expect", "nosuch"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("sockprobe: error: no expectations for 'nosuch'")
    assert "Traceback" not in r.stderr
