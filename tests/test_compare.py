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


def test_baseline_classifies_every_item_changes_first():
    base = doc("6.1", {"tcp/x[ipv4]": "fail", "tcp/y[ipv4]": "pass", "proc/z": "pass",
                       "proc/fixed": "fail", "proc/old": "pass"})
    now = doc("6.1", {"tcp/x[ipv4]": "fail", "tcp/y[ipv4]": "timeout", "proc/z": "pass",
                      "proc/new": "error", "proc/fixed": "pass", "proc/added": "pass"})
    rows = compare.against_baseline(now, base)
    assert [(c, i) for c, i, _, _ in rows] == [
        ("new failure", "proc/new"), ("new failure", "tcp/y[ipv4]"), ("fixed", "proc/fixed"),
        ("new test", "proc/added"), ("gone", "proc/old"),
        ("unchanged", "proc/z"), ("unchanged", "tcp/x[ipv4]")]


def test_two_runs_of_one_system_show_no_differences(tmp_path):
    a = write(tmp_path, "a.json", doc("6.1", {"tcp/x[ipv4]": "pass"}, {"tcp/x[ipv4]": {"n": "1"}}))
    b = write(tmp_path, "b.json", doc("6.1", {"tcp/x[ipv4]": "pass"}, {"tcp/x[ipv4]": {"n": "1"}}))
    text, differ, _ = compare.compare([a, b], tmp_path)
    assert not differ
    assert text.startswith("0 behaviors differ between systems\n")


def test_values_that_vary_within_a_system_are_not_differences(tmp_path):
    a1 = write(tmp_path, "a1.json", doc("6.1", {"tcp/x[ipv4]": "pass", "proc/z": "pass"},
                                        {"tcp/x[ipv4]": {"calls": "1"}, "proc/z": {"st": "Z"}}))
    a2 = write(tmp_path, "a2.json", doc("6.1", {"tcp/x[ipv4]": "pass", "proc/z": "fail"},
                                        {"tcp/x[ipv4]": {"calls": "2"}, "proc/z": {"st": "Z"}}))
    b = write(tmp_path, "b.json", doc("6.12", {"tcp/x[ipv4]": "pass", "proc/z": "pass"},
                                      {"tcp/x[ipv4]": {"calls": "2"}, "proc/z": {"st": "S"}}))
    text, differ, d = compare.compare([a1, a2, b], tmp_path)
    assert not differ
    assert "tcp/x[ipv4] calls: varies (1/2) | 2" in text
    assert "PROC-ZOMBIE [-]: varies (pass/fail) | pass" in text
    assert "proc/z st: Z | S" in text.split("recorded values that differ:")[1]
    assert "1 recorded value differs" in text
    page = (d / "compare.html").read_text()
    assert page.index("id='summary'") < page.index("<table")


def test_differing_verdicts_come_first_and_are_named(tmp_path):
    a = write(tmp_path, "a.json", doc("6.1", {"tcp/x[ipv4]": "fail", "proc/z": "pass"}))
    b = write(tmp_path, "b.json", doc("6.12", {"tcp/x[ipv4]": "pass", "proc/z": "pass"}))
    text, differ, d = compare.compare([a, b], tmp_path)
    assert differ
    assert text.splitlines()[0] == "1 behavior differs between systems: TCP-BOUNDARY-COALESCE"
    assert "1 identical row folded" in text
    md = (d / "compare.md").read_text()
    assert md.index("TCP-BOUNDARY-COALESCE") < md.index("PROC-ZOMBIE")


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
    assert r.returncode == 0 and "0 new failure" in r.stdout, r.stdout
    r = run_cli("check", "-q", "--baseline", str(tmp_path / "none.json"), "tcp")
    assert r.returncode == 2 and "baseline" in r.stderr and "no such report" in r.stderr


def test_bad_kernel_argument_is_one_line():
    r = run_cli("check", "--kernel", "7.7")
    assert r.returncode == 2 and "KERNEL must be uml" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_repeat_report_counts_as_several_runs(tmp_path):
    d = doc("6.1", {"tcp/x[ipv4]": "pass"}, {"tcp/x[ipv4]": {"n": "1"}})
    r2 = dict(d["results"][0], repeat=2, observations={"n": "2"})
    d["results"][0]["repeat"] = 1
    d["results"].append(r2)
    a = write(tmp_path, "a.json", d)
    b = write(tmp_path, "b.json", doc("6.12", {"tcp/x[ipv4]": "pass"}, {"tcp/x[ipv4]": {"n": "1"}}))
    text, differ, _ = compare.compare([a, b], tmp_path)
    # two hosts of different kernels: named by their kernel
    assert "host (6.1): 6.1 glibc, 2 runs" in text
    assert "tcp/x[ipv4] n: varies (1/2) | 1" in text


def test_systems_are_named_as_targets_and_differing_cells_say_why(tmp_path):
    a = doc("6.1", {"tcp/x[ipv4]": "pass"})
    b = doc("6.1.0-uml", {"tcp/x[ipv4]": "fail"})
    b["environment"]["guest"] = "uml"
    b["results"][0]["message"] = "tcp.c:9: read returned 10, expected 40"
    c = doc("6.1", {"tcp/x[ipv4]": "xfail"})
    c["environment"].update(wrap="valgrind --tool=none")
    c["results"][0]["expected"] = {"verdict": "fail", "reason": "valgrind splits reads",
                                   "link": ""}
    paths = [write(tmp_path, n, x) for n, x in (("a", a), ("b", b), ("c", c))]
    text, differ, d = compare.compare(paths, tmp_path)
    assert differ and "system 1" not in text
    assert "  host    uml     valgrind" in text
    assert "    uml: tcp.c:9: read returned 10, expected 40" in text
    assert "    valgrind: valgrind splits reads" in text
    md = (d / "compare.md").read_text()
    assert "| behavior | family | host | uml | valgrind |" in md
    assert "**fail**: tcp.c:9: read returned 10, expected 40" in md
    page = (d / "compare.html").read_text()
    assert "<th>uml</th>" in page and "<span class='why'>valgrind splits reads</span>" in page
