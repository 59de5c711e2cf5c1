"""WRAP: every probe runs under a launcher inside its isolation; the report
names it; a missing, hanging or failing wrapper is a clear outcome and
leaves nothing behind."""
import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, item, new_tag, settings, wait_gone
from runner import discover, execute

ITEM = "tcp/tcp_writes_coalesce_into_one_read"


def check(tmp_path, *args, env=None):
    r = subprocess.run([sys.executable, "-m", "runner", "check", "-q", "--reports",
                        str(tmp_path)] + list(args), cwd=ROOT, capture_output=True, text=True,
                       env=env, timeout=300)
    doc = None
    if (tmp_path / "latest" / "report.json").exists():
        doc = json.loads((tmp_path / "latest" / "report.json").read_text())
    return r, doc


@pytest.mark.skipif(shutil.which("proot") is None, reason="proot is not installed")
def test_proot_runs_the_probe_and_the_report_names_it(tmp_path):
    r, doc = check(tmp_path, "--wrap", "proot", ITEM)
    assert r.returncode == 0, r.stdout + r.stderr
    assert doc["environment"]["wrap"] == "proot"
    assert {x["verdict"] for x in doc["results"]} == {"pass"}


def test_the_wrapper_really_runs_the_probe(tmp_path):
    """A wrapper that records its arguments, then runs them."""
    log = tmp_path / "wrapped"
    w = tmp_path / "w.sh"
    w.write_text('#!/bin/sh\necho "$@" >> %s\nexec "$@"\n' % log)
    w.chmod(0o755)
    it = [i for i in discover.all_items() if i.name == ITEM + "[ipv4]"][0]
    r = execute.run_item(it, settings(wrap=[str(w)]))
    assert r["verdict"] == "pass"
    assert "--run tcp_writes_coalesce_into_one_read --family ipv4" in log.read_text()


def test_a_wrapper_that_hangs_is_a_timeout_and_leaves_nothing():
    tag = new_tag()
    r = execute.run_item(item("passes"), settings(wrap=["sh", "-c", "sleep 1000", "wrapper"], timeout_s=0.5,
                                                  extra_env={"SOCKPROBE_TEST_TAG": tag}))
    assert r["verdict"] == "timeout"
    assert wait_gone(tag) == []


def test_a_wrapper_that_fails_is_an_error_not_a_pass():
    r = execute.run_item(item("passes"), settings(wrap=["false"]))
    assert r["verdict"] == "error"
    assert "no protocol output" in r["message"]


@pytest.mark.parametrize("args,words", [
    (["--wrap", "no-such-wrapper-xyz"], "WRAP command 'no-such-wrapper-xyz' is not installed"),
    (["--wrap", "true", "--kernel", "uml"], "does not combine with KERNEL"),
    (["--wrap", "'unbalanced"], "not a valid command line"),
])
def test_bad_wrap_is_one_clear_error(tmp_path, args, words):
    r, _ = check(tmp_path, *args)
    assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr
