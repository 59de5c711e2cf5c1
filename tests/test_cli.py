"""The command line: real runs write reports; mistakes get one clear line."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def cli(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,needle", [
    (["check", "--bogus"], "unrecognized arguments: --bogus"),
    (["check", "nosuchprobe"], "unknown probe 'nosuchprobe'"),
    (["check", "tcp/no_such_test"], "unknown test 'tcp/no_such_test'"),
    (["check", "--preload", "relative.so"], "PRELOAD must be an absolute path"),
    (["check", "--preload", "/nonexistent/lib.so"], "does not exist"),
    (["check", "--timeout", "0"], "--timeout must be a positive"),
    (["check", "--family", "ipv5"], "--family must be ipv4 or ipv6 (got 'ipv5')"),
    (["check", "NOSUCH=1"], "unknown variable NOSUCH"),
    (["check", "-k", "no_test_is_called_this"], "no test matched"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "say what to do"),
])
def test_mistakes_get_one_line_and_nonzero_exit(args, needle):
    r = cli(*args)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1, r.stderr
    assert needle in err[0] and err[0].startswith("sockprobe: error:")
    assert "Traceback" not in r.stderr + r.stdout


def test_selection_runs_and_reports_ids_and_families(tmp_path):
    r = cli("check", "-q", "--reports", str(tmp_path), "tcp/tcp_connect_binds_ephemeral_port",
            "udp/udp_keeps_datagram_boundaries[ipv6]")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verdicts: 3 pass" in r.stdout and "report: " in r.stdout
    doc = json.loads((tmp_path / "latest" / "report.json").read_text())
    got = sorted((x["test"], x["family"], tuple(x["ids"]), x["verdict"]) for x in doc["results"])
    assert got == [
        ("tcp/tcp_connect_binds_ephemeral_port", "ipv4", ("TCP-CONNECT-IMPLICIT-BIND",), "pass"),
        ("tcp/tcp_connect_binds_ephemeral_port", "ipv6", ("TCP-CONNECT-IMPLICIT-BIND",), "pass"),
        ("udp/udp_keeps_datagram_boundaries", "ipv6", ("UDP-BOUNDARY",), "pass")]
    env = doc["environment"]
    assert env["kernel"] and env["libc"] and env["isolation"] == "namespaces"
    assert "sysctl.net.ipv4.tcp_rmem" in env and env["preload"] is None
    assert "hostname" not in json.dumps(env).lower()


def test_keyword_marker_and_xdist_work_as_in_pytest(tmp_path):
    r = cli("check", "-q", "--reports", str(tmp_path), "-n", "2", "-m", "ipv6 and udp",
            "-k", "boundar or trunc")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((tmp_path / "latest" / "report.json").read_text())
    assert sorted(x["item"] for x in doc["results"]) == [
        "udp/udp_keeps_datagram_boundaries[ipv6]", "udp/udp_short_buffer_truncates_datagram[ipv6]"]


def test_a_failing_item_makes_the_exit_status_nonzero(tmp_path):
    env = dict(os.environ, SOCKPROBE_FAULT="read_caps_at_10")
    r = subprocess.run([sys.executable, "-m", "runner", "check", "-q", "--reports", str(tmp_path),
                        "--preload", str(ROOT / "build" / "libspfault.so"),
                        "tcp/tcp_writes_coalesce_into_one_read[ipv4]"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1
    assert "verdicts: 0 pass, 1 fail" in r.stdout
    doc = json.loads((tmp_path / "latest" / "report.json").read_text())
    assert doc["environment"]["preload"].endswith("libspfault.so")


def test_list_names_every_test_with_ids():
    r = cli("list")
    assert r.returncode == 0
    assert "udp/udp_keeps_datagram_boundaries[ipv4]" in r.stdout and "UDP-BOUNDARY" in r.stdout


@pytest.mark.parametrize("mode", [[], ["--host"]], ids=["namespaces", "host"])
def test_a_run_leaves_no_process_or_zombie_behind(tmp_path, mode):
    from conftest import new_tag, wait_gone
    tag = new_tag()
    r = cli("check", "-q", "--reports", str(tmp_path), *mode, "proc", "sig", "pipe", "dns",
            env=dict(os.environ, SOCKPROBE_TEST_TAG=tag))
    assert r.returncode == 0, r.stdout + r.stderr
    # Probes, their children, sp-isolate, the fixture DNS servers: none left.
    assert wait_gone(tag) == []


def test_the_makefile_passes_every_declared_variable_and_no_other():
    """runner/config.py declares each option once; the Makefile only names
    the variables it hands over (SP_VARS)."""
    import re
    from runner import config
    text = (ROOT / "Makefile").read_text()
    m = re.search(r"^SP_VARS := ((?:.*\\\n)*.*)$", text, re.M)
    names = set(m.group(1).replace("\\\n", " ").split())
    assert names == set(config.BY_MAKE), names ^ set(config.BY_MAKE)


def test_make_variables_and_flags_give_the_same_configuration():
    from runner import cli, config
    a = cli.parser().parse_args(["check", "TIMEOUT=3", "FAMILY=ipv6", "JOBS=0", "K=x", "tcp"])
    b = cli.parser().parse_args(["check", "--timeout", "3", "--family", "ipv6", "-k", "x", "tcp"])
    assert config.from_arguments(a) == config.from_arguments(b)
    assert config.from_arguments(a).workers is None
