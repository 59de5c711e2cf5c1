"""Comparing reports, and judging a run against a baseline."""
import json
import subprocess
import sys

from conftest import ROOT
from runner import compare, report


def doc(kernel, verdicts, obs=None):
    results = []
    for item, v in verdicts.items():
        test, _, fam = item.partition("[")
        results.append({"test": test, "item": item, "probe": test.split("/")[0],
                        "ids": ["TCP-BOUNDARY-COALESCE" if "tcp" in item else "PROC-ZOMBIE"],
                        "family": fam.rstrip("]") or None, "verdict": v, "message": "",
                        "observations": (obs or {}).get(item, {}), "failures": [],
                        "duration_s": 0})
    return report.build(results, {"kernel": kernel, "libc": "glibc"})


def write(tmp_path, name, d):
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return str(p)


def test_table_marks_differing_verdicts_and_values(tmp_path):
    a = write(tmp_path, "a.json", doc("6.1", {"tcp/x[ipv4]": "pass", "proc/z": "pass"},
                                      {"tcp/x[ipv4]": {"read_sizes": "40"}}))
    b = write(tmp_path, "b.json", doc("6.12", {"tcp/x[ipv4]": "fail", "proc/z": "pass"},
                                      {"tcp/x[ipv4]": {"read_sizes": "10"}}))
    text, differ, d = compare.compare([a, b], tmp_path)
    assert differ
    row = [l for l in text.splitlines() if l.startswith("TCP-BOUNDARY-COALESCE [ipv4]")][0]
    assert "pass" in row and "fail" in row and row.endswith("<")
    assert "read_sizes: 40 | 10" in text
    page = (d / "compare.html").read_text()
    assert "class='diff'" in page and "http" not in page.replace("<!DOCTYPE html>", "")
    assert "| TCP-BOUNDARY-COALESCE | ipv4 | **pass** | **fail** |" in (d / "compare.md").read_text()


def test_identical_runs_agree(tmp_path):
    a = write(tmp_path, "a.json", doc("6.1", {"tcp/x[ipv4]": "pass"}))
    text, differ, _ = compare.compare([a, a], tmp_path)
    assert not differ


def test_baseline_separates_regressions_from_known_deviations():
    base = doc("6.1", {"tcp/x[ipv4]": "fail", "tcp/y[ipv4]": "pass", "proc/z": "pass"})
    now = doc("6.1", {"tcp/x[ipv4]": "fail", "tcp/y[ipv4]": "timeout", "proc/z": "pass",
                      "proc/new": "error"})
    worse, known = compare.against_baseline(now, base)
    assert [w[0] for w in worse] == ["proc/new", "tcp/y[ipv4]"]
    assert [k[0] for k in known] == ["tcp/x[ipv4]"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_compare_cli_exit_status_and_errors(tmp_path):
    a = write(tmp_path, "a.json", doc("6.1", {"tcp/x[ipv4]": "pass"}))
    b = write(tmp_path, "b.json", doc("6.12", {"tcp/x[ipv4]": "fail"}))
    assert run_cli("compare", "--out", str(tmp_path), a, a).returncode == 0
    assert run_cli("compare", "--out", str(tmp_path), a, b).returncode == 1
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "old.json").write_text('{"schema": "sockprobe-report/0", "results": []}')
    for args, needle in ((["compare", a], "at least two reports"),
                         (["compare", a, str(tmp_path / "missing.json")], "no such report"),
                         (["compare", a, str(tmp_path / "bad.json")], "not JSON"),
                         (["compare", a, str(tmp_path / "old.json")], "not a sockprobe-report/1")):
        r = run_cli(*args)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_check_against_a_baseline(tmp_path):
    base = doc("x", {"tcp/tcp_connect_binds_ephemeral_port[ipv4]": "fail"})
    p = write(tmp_path, "base.json", base)
    r = run_cli("check", "-q", "--reports", str(tmp_path / "r"), "--baseline", p,
                "tcp/tcp_connect_binds_ephemeral_port[ipv4]")
    assert r.returncode == 0 and "0 worse, 0 known deviations" in r.stdout
    r = run_cli("check", "-q", "--baseline", str(tmp_path / "none.json"), "tcp")
    assert r.returncode == 2 and "baseline" in r.stderr and "no such report" in r.stderr


def test_bad_kernel_argument_is_one_line():
    r = run_cli("check", "--kernel", "7.7")
    assert r.returncode == 2 and "KERNEL must be uml" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
