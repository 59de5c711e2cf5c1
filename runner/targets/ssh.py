"""A remote Linux machine over ssh: TARGET=ssh://user@host[:port].

The bundle of `make dist` (static probes, sp-isolate, fixtures, the POSIX
sh runner) goes over the connection's stdin into a fresh `mktemp -d`
directory on the remote, the runner runs there and its stream comes back
live over the connection's stdout. The remote needs a POSIX sh, mktemp,
gzip and tar; nothing else (no Python, no compiler).

Clean-up, on every way out: the remote runner (`run -r DIR`) removes its
directory when it ends, also when stopped by a signal or when its output
is gone (SIGPIPE: the connection dropped). When the run did not finish,
this side also connects once more (bounded) to stop the remote runner by
its pid and remove the directory, so an interrupted run (Ctrl-C, SIGTERM,
the bound) leaves nothing behind either.

SOCKPROBE_SSH replaces the ssh command (default "ssh"), e.g.
"ssh -F my_config" or "ssh -i key"; options here come after it.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from .. import dist, proc
from ..errors import GuestError, UsageError
from .stream import StreamTarget

OPTIONS = ["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
           "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
CLEANUP_BOUND_S = 15.0
BUNDLE = "sockprobe"   # the directory inside the tarball

# Runs in the remote user's shell (sh -c): unpack into a fresh directory
# and hand over to the runner, which removes the directory when it ends.
# Until then, this script removes it on every way out.
REMOTE = r"""d=$(mktemp -d "${TMPDIR:-/tmp}/sockprobe.XXXXXX") || { echo "sockprobe: mktemp -d failed on the target" >&2; exit 97; }
trap 'rm -rf "$d"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE
echo "@SP1 remote dir=$d pid=$$"
gzip -dc | tar -xf - -C "$d" || { echo "sockprobe: cannot unpack the bundle on the target (it needs gzip and tar)" >&2; exit 98; }
trap - EXIT HUP INT TERM PIPE
exec sh "$d/%s/run" -r "$d" "$@"
""" % BUNDLE


class SshError(GuestError):
    pass


def parse_url(url: str) -> tuple:
    """ssh://user@host[:port] -> (user or None, host, port or None)."""
    u = urlsplit(url)
    try:
        port = u.port
    except ValueError:
        raise SshError("TARGET %s: the port is not a number" % url)
    if u.scheme != "ssh" or not u.hostname or (u.path not in ("", "/")) or u.query:
        raise SshError("TARGET must be ssh://user@host[:port] (got '%s')" % url)
    return u.username, u.hostname, port


class Ssh(StreamTarget):
    kind = "ssh"
    prefix = "ssh"        # how the line saying why a run ended early starts
    cut_short = dist.CUT_SHORT  # the message of the item a run stopped in
    boot_bound_s = 30.0   # connected and unpacking (the first line) within this
    accepts = frozenset({"arch"})   # ARCH=...: a remote of that architecture gets its bundle
    refusal = "the bundle runs on the remote as it is"

    @classmethod
    def from_config(cls, entry, cfg):
        t = cls(cfg.target, cfg.family[0] if len(cfg.family) == 1 else None)
        t.entry = entry
        return t

    def selected_by(self, cfg) -> str:
        return "TARGET=ssh://..."

    def check(self, cfg) -> None:
        if cfg.kernel:
            raise UsageError("KERNEL=%s does not combine with TARGET=ssh://... (%s)"
                             % (cfg.kernel, self.refusal))

    def selection(self, cfg, static: Path) -> list:
        """probe and probe/test words, checked against the static probes."""
        from .. import discover
        if not (static / "sp-isolate").exists():
            raise SshError("the static probes are not built in %s: run `make static` "
                           "(make check TARGET=... builds them)" % static)
        known = sorted(p.name for p in (static / "probes").iterdir())
        for t in cfg.tests:
            probe, _, rest = t.partition("/")
            if probe not in known:
                raise SshError("unknown probe '%s' (probes: %s)" % (probe, ", ".join(known)))
            if rest and rest.split("[")[0] not in [
                    i.test for i in discover.items_of(static / "probes" / probe)]:
                raise SshError("unknown test '%s' (`make list` shows every test)" % t)
        return [t.split("[")[0] for t in cfg.tests]

    def __init__(self, url: str, family: str | None = None):
        super().__init__()
        self.url = url
        self.user, self.host, self.port = parse_url(url)
        self.family = family
        self.remote_dir = None

    def label(self) -> str:
        return "ssh %s%s%s" % (self.user + "@" if self.user else "", self.host,
                               ":%d" % self.port if self.port else "")

    def ssh_command(self) -> list:
        base = shlex.split(os.environ.get("SOCKPROBE_SSH") or "ssh")
        dest = (self.user + "@" if self.user else "") + self.host
        return base + OPTIONS + (["-p", str(self.port)] if self.port else []) + [dest]

    def prepare(self, say) -> None:
        first = shlex.split(os.environ.get("SOCKPROBE_SSH") or "ssh")
        if not first or shutil.which(first[0]) is None:
            raise SshError("the ssh client is not installed (apt-get install openssh-client)")

    def describe(self) -> str:
        return "running on %s (bundle over ssh)" % self.url

    def start(self, static, work, tests, item_timeout, bound_s, on_stream, say) -> str:
        tar = dist.make_bundle(static, work, name=BUNDLE)
        self.stream_path = work / "stream"
        self.console = work / "ssh.log"
        args = ["-t", str(max(1, int(-(-item_timeout // 1))))]
        if self.family:
            args += ["-f", self.family]
        remote = "sh -c %s sockprobe %s" % (shlex.quote(REMOTE), " ".join(
            shlex.quote(a) for a in args + list(tests)))
        cmd = ["sh", "-c", 'exec "$@" <"$SP_BUNDLE" >"$SP_STREAM"', "sh"] + \
            self.ssh_command() + [remote]
        env = dict(os.environ, SP_BUNDLE=str(tar), SP_STREAM=str(self.stream_path))
        how, self.bound_s = "exited", bound_s
        try:
            how = proc.run_bounded(cmd, self.console, bound_s, env=env,
                                   stream=self.stream_path, boot_bound_s=self.boot_bound_s,
                                   on_stream=on_stream)
        finally:
            with proc.hold_signals():
                tar.unlink(missing_ok=True)
                self._clean_remote(say)
        return how

    def _clean_remote(self, say) -> None:
        """The run did not finish: stop the remote runner, remove its
        directory (bounded; one line when the target cannot be reached)."""
        text = self.stream_path.read_text(errors="replace") if self.stream_path.exists() else ""
        m = re.search(r"^@SP1 remote dir=(\S+) pid=(\d+)", text, re.M)
        if not m:
            return
        self.remote_dir = m.group(1)
        if re.search(r"^@SP1 guest-done", text, re.M):
            return  # the runner removed it on its way out
        d, pid = shlex.quote(m.group(1)), m.group(2)
        script = ('[ -d %s ] || exit 0; kill -TERM %s 2>/dev/null; n=0; '
                  'while kill -0 %s 2>/dev/null && [ $n -lt 50 ]; do '
                  'sleep 0.2 2>/dev/null || sleep 1; n=$((n+1)); done; '
                  'rm -rf %s; [ ! -d %s ]' % (d, pid, pid, d, d))
        try:
            r = subprocess.run(self.ssh_command() + [script], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=CLEANUP_BOUND_S,
                               start_new_session=True)
            ok = r.returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        if not ok:
            say("sockprobe: could not reach %s to remove %s; the runner there removes it "
                "when its next write fails" % (self.label(), m.group(1)))

    def describe_failure(self, how: str, console: Path, boot_bound_s=None) -> str:
        lines = console.read_text(errors="replace").splitlines() if console.exists() else []
        own = [l.strip() for l in lines if l.startswith(("ssh:", "sockprobe:", "kex_", "Connection",
                                                         "Permission denied", "Host key",
                                                         "Timeout", "client_loop", "Received"))]
        last = (own or [l.strip() for l in lines if l.strip()] or ["no message"])[-1][-300:]
        said = [l.strip() for l in lines if l.startswith(("sockprobe-run:", "sockprobe:"))]
        if said and how == "exited":  # the remote side said what is missing
            return "cannot run on %s: %s" % (self.url, said[-1])
        started = self.stream_path is not None and self.stream_path.exists() and \
            self.stream_path.stat().st_size > 0
        if not started and how == "exited":
            return "cannot run on %s: %s" % (self.url, last)
        if how == "hung":
            return "the run on %s did not finish within its bound of %g s (--guest-timeout); " \
                "stopped%s" % (self.url, self.bound_s, self._during())
        if how == "silent":
            return "%s printed nothing within %g s of connecting (%s)" % (
                self.url, boot_bound_s or self.boot_bound_s, last)
        return "the connection to %s ended before the run finished%s (%s)" % (
            self.url, self._during(), last)

    def _during(self) -> str:
        """ during probe/test[family]: the item that was running."""
        text = self.stream_path.read_text(errors="replace") if self.stream_path.exists() else ""
        m = None
        for m in re.finditer(r"^@SP1 (item probe=(\S+) test=(\S+) family=(\S+)|exit )", text, re.M):
            pass
        if m is None or not m.group(2):
            return ""
        fam = "" if m.group(4) == "none" else "[%s]" % m.group(4)
        return " during %s/%s%s" % (m.group(2), m.group(3), fam)

    def environment(self) -> dict:
        return {"guest": self.label(), "target": self.url,
                "remote_dir": self.remote_dir}
