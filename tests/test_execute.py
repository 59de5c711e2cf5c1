"""Running items: verdicts for misbehaving probes, timeouts, crashes,
cleanup of everything a probe started, and the PRELOAD scoping."""
import os
import stat

import pytest

from conftest import FAULTLIB, item, new_tag, settings, wait_gone
from runner import execute


def run(test, family="none", tag=None, **kw):
    kw["extra_env"] = {"SOCKPROBE_TEST_TAG": tag or new_tag()}
    return execute.run_item(item(test, family), settings(**kw))


def test_pass_records_observations_and_isolation():
    r = run("passes")
    assert r["verdict"] == "pass"
    assert r["observations"]["answer"] == "42"
    assert r["isolation"] == "namespaces"
    assert r["family"] is None and r["ids"] == ["SELF"]


def test_failed_check_is_fail_with_expected_and_observed():
    r = run("fails_a_check")
    assert r["verdict"] == "fail"
    assert "expected 1, observed 2" in r["message"]
    assert r["failures"][0]["at"].startswith("misbehave.c:")


def test_crash_is_error_naming_the_signal():
    r = run("crashes")
    assert (r["verdict"], r["message"]) == ("error", "probe killed by SIGSEGV")


def test_crash_without_namespaces_too():
    r = run("crashes", host_only=True)
    assert (r["verdict"], r["message"]) == ("error", "probe killed by SIGSEGV")


def test_hang_is_timeout_and_nothing_is_left():
    tag = new_tag()
    r = run("hangs", tag=tag, timeout_s=0.5)
    assert r["verdict"] == "timeout"
    assert r["duration_s"] < 3
    assert wait_gone(tag) == []


def test_skip_carries_its_reason():
    r = run("skips")
    assert (r["verdict"], r["message"]) == ("skip", "nothing to see here")


def test_unmet_precondition_is_broken_not_fail_or_pass():
    r = run("cannot_set_up")
    assert (r["verdict"], r["message"]) == ("broken", "an option the stack lacks")
    assert r["observations"]["broken_at"].startswith("misbehave.c:")


def test_failed_check_in_a_child_fails_the_test():
    r = run("child_check_fails")
    assert r["verdict"] == "fail"
    child = [f for f in r["failures"] if f.get("child")]
    assert child and child[0]["expected"] == "3" and child[0]["observed"] == "4"


@pytest.mark.parametrize("host_only", [False, True], ids=["namespaces", "host"])
def test_child_that_never_exits_is_killed(host_only):
    tag = new_tag()
    r = run("leaves_child_running", tag=tag, host_only=host_only)
    assert r["verdict"] == "pass"
    assert wait_gone(tag) == []


def test_daemonised_grandchild_dies_with_the_pid_namespace():
    tag = new_tag()
    r = run("leaves_daemon_running", family="ipv4", tag=tag)
    assert r["verdict"] == "pass"
    assert wait_gone(tag) == []


def test_the_leftover_check_sees_a_leftover():
    """The check above would pass vacuously if it could not see one."""
    import subprocess
    tag = new_tag()
    p = subprocess.Popen(["sleep", "30"], env=dict(os.environ, SOCKPROBE_TEST_TAG=tag))
    try:
        assert wait_gone(tag, bound_s=0.1) == [p.pid]
    finally:
        p.kill()
        p.wait()
    assert wait_gone(tag) == []


def script_probe(tmp_path, body):
    p = tmp_path / "probe.sh"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return p


def run_script(tmp_path, body, **kw):
    p = script_probe(tmp_path, body)
    return execute.run_item(item("t", binary=p, probe="script"), settings(**kw))


def test_garbage_output_is_an_error(tmp_path):
    r = run_script(tmp_path, "echo 'lorem ipsum'; printf '\\001\\002\\377\\n'\n")
    assert r["verdict"] == "error" and "no protocol output" in r["message"]


def test_truncated_stream_is_an_error(tmp_path):
    r = run_script(tmp_path, "echo '@SP1 begin probe=script test=t family=none ids=SELF'\n")
    assert r["verdict"] == "error" and "truncated" in r["message"]


def test_unrunnable_probe_is_an_error(tmp_path):
    r = execute.run_item(item("t", binary=tmp_path / "nope"), settings(isolate=None))
    assert r["verdict"] == "error" and "cannot start" in r["message"]


PRINT_ENV = ("echo '@SP1 begin probe=script test=t family=none ids=SELF'\n"
             "echo \"@SP1 obs key=preload value=${LD_PRELOAD:-none}\"\n"
             "echo \"@SP1 obs key=wrapper value=${SOCKET_WRAPPER_DIR:-none}\"\n"
             "echo '@SP1 end verdict=pass message='\n")


def test_preload_reaches_the_probe_only(tmp_path, monkeypatch):
    # A directory that does not exist: for one that does, each item gets a
    # directory of its own under it (own_socket_wrapper_dir), whatever the
    # machine has at /tmp/sw.
    wrapper = str(tmp_path / "no-such-sw-dir")
    monkeypatch.setenv("SOCKET_WRAPPER_DIR", wrapper)
    r = run_script(tmp_path, PRINT_ENV, preload=str(FAULTLIB))
    assert r["verdict"] == "pass"
    assert r["observations"]["preload"] == str(FAULTLIB)
    assert r["observations"]["wrapper"] == wrapper  # the caller's environment
    assert "LD_PRELOAD" not in os.environ
    assert str(FAULTLIB) not in open("/proc/self/maps").read()


def test_no_preload_means_none(tmp_path):
    r = run_script(tmp_path, PRINT_ENV)
    assert r["observations"]["preload"] == "none"


SOCKET_WRAPPER = "/usr/lib/x86_64-linux-gnu/libsocket_wrapper.so"


@pytest.mark.skipif(not os.path.exists(SOCKET_WRAPPER), reason="libsocket-wrapper is not installed")
def test_a_stack_that_refuses_ipv6_loopback_is_a_finding_not_a_skip(tmp_path, monkeypatch):
    """socket_wrapper rejects ::1 although the kernel has it: broken with
    premise_refused, not the skip of a machine without IPv6."""
    from runner import discover
    monkeypatch.setenv("SOCKET_WRAPPER_DIR", str(tmp_path))
    it = [i for i in discover.all_items() if i.probe == "tcp" and i.family == "ipv6"][0]
    r = execute.run_item(it, settings(preload=SOCKET_WRAPPER))
    assert r["verdict"] == "broken", r
    assert r["observations"]["premise_refused"] == "bind(::1): EADDRNOTAVAIL"
    assert "refused the premise" in r["message"]
