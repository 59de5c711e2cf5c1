"""The run configuration of `check`: every option declared once, here.

An Option names the Config field, its Makefile variable, its command-line
flag, its default, its help and how its text is read and checked. From
these come the `check` sub-command's arguments (cli.py), the Makefile's
pass-through (`make check VAR=value` becomes the word `VAR=value` on the
command line, read here; tests/test_cli.py keeps the Makefile's list
SP_VARS equal to the variables declared here) and one Config, checked
once. Which options a target accepts or refuses is the targets' one rule
(runner/targets/__init__.py). The Makefile itself checks only what it
must before installing packages and building: ARCH and LIBC (they choose
the cross compiler and the musl build).

A value that is wrong is one line naming it the way the user wrote it
(TIMEOUT=0 or --timeout 0) and exit status 2.
"""
from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path

from . import arch as arch_mod
from .errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
REPORTS = ROOT / "reports"


# ---- readers: text -> value, or a UsageError saying what is wrong -----------

def _positive(text: str, how: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = 0.0
    if not v > 0 or v != v or v == float("inf"):
        raise UsageError("%s must be a positive number of seconds (got '%s')" % (how, text))
    return v


def _count(text: str, how: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise UsageError("%s must be a positive whole number (got '%s')" % (how, text))
    return int(text)


def _workers(text: str, how: str):
    if not re.fullmatch(r"[0-9]+|auto", text):
        raise UsageError("%s must be a number of items at once or auto (got '%s')" % (how, text))
    return None if text == "0" else text


def _family(text: str, how: str) -> str:
    if text not in ("ipv4", "ipv6"):
        raise UsageError("%s must be ipv4 or ipv6 (got '%s')" % (how, text))
    return text


def _libc(text: str, how: str) -> str:
    if text not in ("glibc", "musl"):
        raise UsageError("%s must be glibc or musl (got '%s')" % (how, text))
    return text


def _preload(text: str, how: str) -> str:
    if not os.path.isabs(text):
        raise UsageError("PRELOAD must be an absolute path (got '%s')" % text)
    if not os.path.isfile(text):
        raise UsageError("PRELOAD library '%s' does not exist" % text)
    return text


def _wrap(text: str, how: str) -> str:
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise UsageError("WRAP is not a valid command line (%s)" % e)
    if not words:
        raise UsageError("WRAP is empty")
    return text   # the command is looked for once its package is installed (targets/host.py)


def _arch(text: str, how: str) -> str:
    try:
        return arch_mod.validate(text)
    except arch_mod.ArchError as e:
        raise UsageError(str(e))


def _expect(text: str, how: str) -> str:
    from . import expect
    try:
        path = expect.resolve(text)
        expect.load(path)
    except (expect.ExpectError, OSError) as e:
        raise UsageError(str(e))
    return str(path)


def _baseline(text: str, how: str) -> str:
    from . import report
    try:
        report.load(text)
    except report.ReportError as e:
        raise UsageError("baseline %s" % e)
    return text


def _text(text: str, how: str) -> str:
    return text


@dataclass(frozen=True)
class Option:
    name: str                 # the Config field
    make: str | None          # the Makefile variable (None: command line only)
    flags: tuple              # the command-line flags ((): positional)
    help: str
    default: object = None
    read: object = _text      # (text, how the user named it) -> value
    kind: str = "value"       # value | flag | append | count | words
    metavar: str | None = None


OPTIONS = (
    Option("tests", "TESTS", (), "probe (tcp), test (tcp/NAME) or item (tcp/NAME[ipv6]); "
           "default all", (), kind="words", metavar="TEST"),
    Option("timeout", "TIMEOUT", ("--timeout",), "seconds per item (default 5)", 5.0, _positive),
    Option("preload", "PRELOAD", ("--preload",),
           "absolute path of an LD_PRELOAD library for the probes", None, _preload),
    Option("wrap", "WRAP", ("--wrap",), "run every probe as CMD ARGS PROBE ... inside its "
           "isolation (e.g. proot, 'valgrind --tool=none')", None, _wrap, metavar="'CMD ARGS'"),
    Option("reports", "REPORT_DIR", ("--reports",), "report directory (default reports/)",
           str(REPORTS)),
    Option("build", None, ("--build",), "build directory", str(BUILD)),
    Option("host", "HOST", ("--host",), "no namespaces: run on the host loopback", False,
           kind="flag"),
    Option("family", "FAMILY", ("--family",), "only this address family (ipv4 or ipv6; "
           "repeatable)", (), _family, kind="append"),
    Option("keyword", "K", ("-k",), "pytest -k expression"),
    Option("marker", None, ("-m",), "pytest -m expression"),
    Option("workers", "JOBS", ("-n",), "items at once, e.g. 16 or auto (8 per core); "
           "0: one at a time", None, _workers),
    Option("verbose", None, ("-v",), "more pytest output", 0, kind="count"),
    Option("quiet", None, ("-q",), "less pytest output", False, kind="flag"),
    Option("repeat", "REPEAT", ("--repeat",), "run every item N times; count flips", 1, _count),
    Option("baseline", "BASELINE", ("--baseline",),
           "report.json: fail only on behaviors worse than in it", None, _baseline),
    Option("kernel", "KERNEL", ("--kernel",), "run under another kernel or sandbox: a name "
           "of runner/targets/registry.py (uml, 6.1, 6.12, ...) or a bzImage path"),
    Option("libc", "LIBC", ("--libc",), "musl: the static musl probes (build/musl)", "glibc",
           _libc),
    Option("arch", "ARCH", ("--arch",), "another CPU: %s (build/ARCH, under qemu-user on this "
           "kernel)" % ", ".join(arch_mod.ARCHES), None, _arch),
    Option("expect", "EXPECT", ("--expect",), "known deviations (expectations/NAME.tsv or a "
           ".tsv file) become xfail", None, _expect, metavar="NAME|FILE"),
    Option("ktap", "KTAP", ("--ktap",), "also print the run's results.ktap (KTAP v1) at the end",
           False, kind="flag"),
    Option("target", "TARGET", ("--target",), "run the bundle on a remote machine over ssh",
           metavar="ssh://USER@HOST[:PORT]"),
    Option("guest_timeout", None, ("--guest-timeout",), "seconds a guest may take in all "
           "(default: a boot bound plus items x --timeout)", None, _positive),
)
BY_MAKE = {o.make: o for o in OPTIONS if o.make}
BY_NAME = {o.name: o for o in OPTIONS}


class _Methods:
    """What a Config can do beyond holding the options' values."""

    @property
    def wrap_words(self) -> list:
        """WRAP as words (split once, here)."""
        return shlex.split(self.wrap) if self.wrap else []

    def with_(self, **kw) -> "Config":
        return Config(**dict({f.name: getattr(self, f.name) for f in fields(self)}, **kw))

    def to_json(self) -> str:
        """The configuration as one word (pytest's --sp-config, which
        pytest-xdist hands on to its workers)."""
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_json(cls, text: str) -> "Config":
        d = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# One run's configuration: a field per Option (its default from there, so
# each option is declared once), and `extra`, what a target adds for its
# own run (the build directory it chose, the native sp-isolate of ARCH=).
Config = make_dataclass(
    "Config", [(o.name, object, field(default=o.default)) for o in OPTIONS] +
    [("extra", dict, field(default_factory=dict))], bases=(_Methods,), frozen=True)
Config.__module__ = __name__


def add_arguments(p) -> None:
    """The `check` sub-command's arguments, from OPTIONS."""
    for o in OPTIONS:
        if o.kind == "words":
            p.add_argument(o.name, nargs="*", metavar=o.metavar, help=o.help)
        elif o.kind == "flag":
            p.add_argument(*o.flags, dest=o.name, action="store_true", help=o.help)
        elif o.kind == "count":
            p.add_argument(*o.flags, dest=o.name, action="count", default=0, help=o.help)
        elif o.kind == "append":
            p.add_argument(*o.flags, dest=o.name, action="append", metavar=o.metavar,
                           help=o.help)
        else:
            p.add_argument(*o.flags, dest=o.name, metavar=o.metavar, help=o.help)


def from_arguments(ns) -> Config:
    """The parsed `check` arguments -> one checked Config. Words VAR=value
    among the tests are the Makefile's variables (`make check VAR=value`)."""
    values, tests = {}, []
    for word in ns.tests:
        m = re.fullmatch(r"([A-Z_]+)=(.*)", word, re.S)
        if not m:
            tests.append(word)
            continue
        o = BY_MAKE.get(m.group(1))
        if o is None:
            raise UsageError("unknown variable %s (the variables: %s)" % (
                m.group(1), ", ".join(sorted(BY_MAKE))))
        text = m.group(2)
        if text == "":
            continue
        if o.kind == "words":
            tests += text.split()
        elif o.kind == "flag":
            values[o.name] = True   # HOST=1, KTAP=1: any value
        else:
            v = o.read(text, o.make)
            values[o.name] = (v,) if o.kind == "append" else v
    for o in OPTIONS:
        if o.kind == "words" or o.name in values:
            continue
        given = getattr(ns, o.name, None)
        if given is None or (o.kind == "count" and not given):
            continue
        how = o.flags[0] if o.flags else o.name
        if o.kind == "append":
            values[o.name] = tuple(o.read(t, how) for t in given)
        elif o.kind in ("flag", "count"):
            if given:
                values[o.name] = given
        else:
            values[o.name] = o.read(given, how)
    values["tests"] = tuple(tests)
    return Config(**values)


def command_line(options: dict) -> list:
    """`runner check` arguments that set options ({"kernel": "uml"})."""
    out = []
    for name, value in options.items():
        o = BY_NAME[name]
        if o.kind == "flag":
            out += [o.flags[0]] if value else []
        else:
            out += [o.flags[0], str(value)]
    return out


def check_words(words: list) -> None:
    """`make check`'s VAR=value words, checked as the run will check them
    (the values, then the chosen target's accept/refuse rule), before
    make installs or builds anything; UsageError with the one line."""
    import argparse
    from .targets import registry
    ns = argparse.Namespace(**{o.name: None for o in OPTIONS})
    ns.tests = list(words)
    cfg = from_arguments(ns)
    registry.choose(cfg).make(cfg).check_options(cfg)


if __name__ == "__main__":   # the Makefile: python3 -m runner.config VAR=value ...
    import sys
    try:
        check_words(sys.argv[1:])
    except UsageError as e:
        print(e)
        sys.exit(2)
