"""Hostile environments: each ends with a clear verdict per item, never a
hang or a false pass, and leaves nothing behind.

(Misbehaving probes, hangs, crashes, garbage and truncated streams are in
test_execute.py; bad CLI and compare input in test_cli.py and
test_compare.py.)"""
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, new_tag, wait_gone

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
ITEMS = ["tcp/tcp_connect_binds_ephemeral_port", "udp/udp_keeps_datagram_boundaries",
         "proc/exited_child_is_a_zombie_until_waited", "pipe/pipe_connects_parent_and_child"]


def in_child(setup, argv, timeout=120, before=None, from_parent=None):
    """Fork; in the child run before() (e.g. unshare), let the parent run
    from_parent(pid) (what only the outside may do, e.g. write the child's
    uid_map), then setup() (privileges), then exec argv with output to a
    pipe. Pipes order the two sides. Returns (exit status, output)."""
    r, w = os.pipe()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.dup2(w, 1)
            os.dup2(w, 2)
            if before:
                before()
            os.write(ready_w, b"x")
            os.read(go_r, 1)
            setup()
            os.execv(argv[0], argv)
        except BaseException as e:  # report, never return into pytest
            os.write(2, ("setup failed: %r\n" % (e,)).encode())
        finally:
            os._exit(127)
    os.close(w)
    os.read(ready_r, 1)
    if from_parent:
        from_parent(pid)
    os.write(go_w, b"x")
    for fd in (ready_r, ready_w, go_r, go_w):
        os.close(fd)
    out = b""
    end = time.monotonic() + timeout
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        out += chunk
        assert time.monotonic() < end, "the run did not end in %ds" % timeout
    os.close(r)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st), out.decode("utf-8", "replace")


def in_session(sid, bound_s=3.0):
    """Processes still in session sid, after a bounded wait."""
    end = time.monotonic() + bound_s
    while True:
        left = []
        for d in Path("/proc").iterdir():
            try:
                stat = (d / "stat").read_text() if d.name.isdigit() else ""
            except OSError:
                continue
            if stat and int(stat[stat.rindex(")") + 2:].split()[3]) == sid:
                left.append(int(d.name))
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.02)  # the test harness polls; probes never do this


def unshare(flags):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), "unshare")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def cli(*args):
    return [sys.executable, "-m", "runner", "check", "-q", *args]


def report_of(reports: Path) -> dict:
    return json.loads((reports / "latest" / "report.json").read_text())


_TREE = []


def tree_for_others() -> Path:
    """What an unprivileged run needs (runner, cases, fixtures, the built
    probes), copied once to a world-readable temporary directory: the
    checkout itself may sit in a home no other user can enter (root's
    0700 /root). Removed at the end of the session (conftest)."""
    import shutil
    import tempfile
    if _TREE:
        return _TREE[0]
    d = Path(tempfile.mkdtemp(prefix="sp-hostile-tree-"))
    d.chmod(0o755)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "reports", "static", "guest", "obj")
    for name in ("runner", "cases", "fixtures", "build"):
        shutil.copytree(ROOT / name, d / name, symlinks=True, ignore=skip)
    shutil.copy(ROOT / "pytest.ini", d / "pytest.ini")
    for p in [d] + list(d.rglob("*")):
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() or os.access(p, os.X_OK) else 0o644)
    _TREE.append(d)
    return d


@pytest.fixture(scope="session", autouse=True)
def _remove_tree_for_others():
    yield
    import shutil
    for d in _TREE:
        shutil.rmtree(d, ignore_errors=True)


def drop_to(uid, tree=None):
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    os.chdir(str(tree))


def proc_sys_read_only() -> bool:
    return bool(os.statvfs("/proc/sys").f_flag & os.ST_RDONLY)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to set the scene up")
needs_writable_sysctls = pytest.mark.skipif(
    proc_sys_read_only(), reason="needs a writable /proc/sys to set the scene up "
    "(read-only here, as in a container)")


@pytest.fixture
def open_dir():
    """A report directory another user can reach and write."""
    import shutil
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="sp-hostile-"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@needs_root
def test_unprivileged_user_gets_clear_verdicts(open_dir):
    tmp_path = open_dir
    tree = tree_for_others()
    rc, out = in_child(lambda: drop_to(65534, tree), cli("--reports", str(tmp_path), *ITEMS))
    assert rc == 0, out
    doc = report_of(tmp_path)
    # Every item passes; in a container, where the item's user namespace
    # cannot mount its own /proc, an item that needs one skips and says so.
    for r in doc["results"]:
        assert r["verdict"] == "pass" or (
            r["verdict"] == "skip" and "/proc" in r["message"]
            and "outer /proc" in r.get("isolation_reason", "")), r
    assert doc["environment"]["isolation"] == "namespaces"  # unprivileged user namespaces


@needs_root
@needs_writable_sysctls
def test_without_user_namespaces_items_fall_back_to_host_and_say_so(open_dir):
    """A user namespace of our own where creating further user namespaces
    is forbidden (user.max_user_namespaces=0), entered as a non-root user."""
    tmp_path = open_dir
    tree = tree_for_others()

    def map_ids(pid):  # only real root outside may map a range of ids
        write("/proc/%d/uid_map" % pid, "0 0 65536")
        write("/proc/%d/gid_map" % pid, "0 0 65536")

    def scene():
        write("/proc/sys/user/max_user_namespaces", "0")
        drop_to(1000, tree)

    rc, out = in_child(scene, cli("--reports", str(tmp_path), *ITEMS),
                       before=lambda: unshare(CLONE_NEWUSER), from_parent=map_ids)
    doc = report_of(tmp_path)
    assert rc == 0, out
    assert doc["environment"]["isolation"] == "host"
    assert "unshare" in doc["environment"]["isolation_reason"]
    assert {r["isolation"] for r in doc["results"]} == {"host"}
    assert all(r["isolation_reason"] for r in doc["results"])
    assert "isolation host" in out  # the terminal says so too
    # Wire checks say why they did not run.
    tcp = [r for r in doc["results"] if r["test"].startswith("tcp/")]
    assert {r["verdict"] for r in doc["results"]} == {"pass"}
    assert tcp and all("wire" not in r["observations"] or "skipped" in r["observations"]["wire"]
                       for r in tcp)


MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
CLONE_NEWNS = 0x00020000


def mount(src, dst, fstype=None, flags=0, data=None):
    libc = ctypes.CDLL(None, use_errno=True)
    enc = lambda v: v.encode() if v is not None else None  # noqa: E731
    if libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        raise OSError(ctypes.get_errno(), "mount %s" % dst)


def like_a_container(real_etc: Path):
    """This process's own mounts as a container runtime makes them: /proc
    with a read-only /proc/sys over it (so no user namespace may mount a
    procfs of its own), and an /etc without hosts."""
    unshare(CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("proc", "/proc", "proc")
    mount("/proc/sys", "/proc/sys", None, MS_BIND | MS_REC)
    mount(None, "/proc/sys", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    mount("/etc", str(real_etc), None, MS_BIND | MS_REC)
    mount("tmpfs", "/etc", "tmpfs", 0, "mode=0755")
    for name in os.listdir(str(real_etc)):
        if name != "hosts":
            os.symlink(str(real_etc / name), "/etc/" + name)


@needs_root
def test_in_a_container_items_say_they_lack_their_own_proc_and_dns_brings_its_hosts(open_dir):
    """As a user in a container: sp-isolate cannot mount the namespace's
    own /proc; it says so, the items that need it skip with the reason
    (never pass on the outer /proc), and the DNS items create the /etc/hosts
    the system lacks inside their own mount namespace."""
    tree = tree_for_others()
    real_etc = open_dir / "real-etc"
    real_etc.mkdir()
    needs_proc = ["tcp/tcp_flow_control_blocks_writer_until_reader_reads",
                  "pipe/pipe_connects_parent_and_child"]
    dns = "dns/gethostbyname_reads_the_hosts_file"

    def scene():
        like_a_container(real_etc)
        drop_to(65534, tree)

    rc, out = in_child(scene, cli("--reports", str(open_dir / "r"), *ITEMS, *needs_proc, dns))
    assert rc == 0, out
    doc = report_of(open_dir / "r")
    assert doc["environment"]["isolation"] == "namespaces"
    assert "outer /proc" in doc["environment"]["isolation_reason"]
    for r in doc["results"]:
        assert "outer /proc" in r["isolation_reason"], r
        if r["test"] in needs_proc:
            assert r["verdict"] == "skip" and "/proc" in r["message"], r
        elif r["test"] == dns and "dnsmasq" in r["message"]:
            assert r["verdict"] == "skip", r  # no dnsmasq on this system
        else:
            assert r["verdict"] == "pass", r
    assert not os.path.exists("/etc/.sp-real")  # the real /etc was never written


@needs_root
@needs_writable_sysctls
def test_without_ipv6_the_ipv6_items_skip_with_the_reason(tmp_path):
    def scene():
        unshare(CLONE_NEWUSER | CLONE_NEWNET)
        write("/proc/self/setgroups", "deny")
        write("/proc/self/uid_map", "0 0 1")
        write("/proc/self/gid_map", "0 0 1")
        write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1")
        write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        write("/proc/sys/net/ipv6/conf/lo/disable_ipv6", "1")
        os.chdir(str(ROOT))

    rc, out = in_child(scene, cli("--host", "--reports", str(tmp_path), *ITEMS[:2]))
    assert rc == 0, out
    doc = report_of(tmp_path)
    v6 = [r for r in doc["results"] if r["family"] == "ipv6"]
    v4 = [r for r in doc["results"] if r["family"] == "ipv4"]
    assert v6 and {r["verdict"] for r in v6} == {"skip"}
    assert all("IPv6" in r["message"] for r in v6)
    assert {r["verdict"] for r in v4} == {"pass"}


def test_ctrl_c_mid_parallel_run_leaves_nothing_and_a_partial_report(tmp_path):
    before = {p.name for p in Path("/tmp").iterdir()}
    tag = new_tag()
    proc = subprocess.Popen(cli("-n", "2", "--repeat", "30", "--reports", str(tmp_path)),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env=dict(os.environ, SOCKPROBE_TEST_TAG=tag))
    # Wait (bounded) until items are running, then press Ctrl-C: SIGINT to
    # the whole foreground group, as a terminal does.
    seen = b""
    end = time.monotonic() + 60
    while seen.count(b".") < 20 and time.monotonic() < end:
        seen += proc.stdout.read1(4096)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out = seen + proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0, out.decode(errors="replace")[-2000:]
    doc = report_of(tmp_path)
    assert doc["partial"] is True
    assert "PARTIAL" in (tmp_path / "latest" / "summary.md").read_text().upper()
    assert wait_gone(tag) == []  # probes, sp-isolate, their children
    assert in_session(proc.pid) == []  # the runner, its xdist workers, anything they started
    left = {p.name for p in Path("/tmp").iterdir()} - before
    assert not [n for n in left if "sockprobe" in n]


@needs_root
def test_unwritable_report_directory_is_one_clear_line(open_dir):
    locked = open_dir / "locked"
    locked.mkdir(mode=0o500)
    tree = tree_for_others()
    rc, out = in_child(lambda: drop_to(65534, tree), cli("--reports", str(locked), ITEMS[0]))
    assert rc == 2 and "Traceback" not in out
    assert out.strip().splitlines() == [
        "sockprobe: error: cannot write reports to %s: permission denied (choose another "
        "with REPORT_DIR=... or --reports)" % locked]
