"""The shipped expectation files (expectations/*.tsv) and the two things
they rely on: `*` keys (a pattern over items, brackets literal) and a
SOCKET_WRAPPER_DIR of its own for each item under socket_wrapper."""
import json
import os
import subprocess
import sys

import pytest

from runner import execute, expect


def rec(item, ids=()):
    return {"item": item, "test": item.split("[")[0], "ids": list(ids), "verdict": "broken",
            "message": "m"}


def test_shipped_files_load_and_every_line_says_why():
    files = sorted(expect.DIR.glob("*.tsv"))
    assert {f.stem for f in files} >= {"socket_wrapper", "musl", "uml", "qemu-6.1", "qemu-6.12",
                                       "proot", "valgrind"}
    for f in files:
        for e in expect.load(f).values():
            assert len(e.reason.split()) >= 8, "%s: say what the stack does differently" % e.where
            assert not e.link or e.link.startswith("https://"), e.where


def test_star_keys_are_patterns_over_items_with_literal_brackets(tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text("udp/*[ipv6]\tbroken\tthe stack refuses ::1 for every UDP item here\n"
                 "udp/b[ipv6]\tfail\tthis one checks bind() itself, so it fails\n")
    t = expect.load(p)
    assert expect.match(rec("udp/a[ipv6]"), t).key == "udp/*[ipv6]"
    assert expect.match(rec("udp/b[ipv6]"), t).key == "udp/b[ipv6]"  # the item wins
    assert expect.match(rec("udp/a[ipv4]"), t) is None
    assert expect.match(rec("udp/av"), t) is None  # [ipv6] is not a character class
    assert expect.apply(rec("udp/a[ipv6]"), t)["verdict"] == "xfail"


def test_each_socket_wrapper_item_gets_a_directory_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("SOCKET_WRAPPER_DIR", str(tmp_path))
    s = execute.Settings(isolate=None, preload="/lib/x.so")
    env1, env2 = execute.probe_env(s), execute.probe_env(s)
    d1 = execute.own_socket_wrapper_dir(env1, s)
    d2 = execute.own_socket_wrapper_dir(env2, s)
    assert d1 != d2 and os.path.dirname(d1) == str(tmp_path) == os.path.dirname(d2)
    assert env1["SOCKET_WRAPPER_DIR"] == d1 and os.path.isdir(d1)
    plain = execute.Settings(isolate=None)
    env = execute.probe_env(plain)
    assert execute.own_socket_wrapper_dir(env, plain) is None
    assert env["SOCKET_WRAPPER_DIR"] == str(tmp_path)


MUSL = expect.DIR.parent / "build" / "musl"


@pytest.mark.skipif(not (MUSL / "sp-isolate").exists(),
                    reason="the musl probes are not built (make musl; make test builds them)")
def test_libc_musl_runs_the_musl_build_and_its_expectations_hold(tmp_path):
    """LIBC=musl runs build/musl, whose two resolver deviations are the
    musl file's dns lines: xfail with their reasons, the run passes."""
    r = subprocess.run([sys.executable, "-m", "runner", "check", "--libc", "musl", "--expect",
                        "musl", "-q", "--reports", str(tmp_path), "dns"],
                       cwd=expect.DIR.parent, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((tmp_path / "latest" / "report.json").read_text())
    assert doc["environment"]["libc"] == "musl"
    got = {x["item"]: x["verdict"] for x in doc["results"]}
    assert {i for i, v in got.items() if v == "xfail"} == {
        k for k in expect.load(expect.DIR / "musl.tsv") if k.startswith("dns/")}
    assert {v for i, v in got.items() if v != "xfail"} == {"pass"}
