"""The host target: this machine's kernel. pytest is the scheduler: it
collects one item per (probe test, family) through runner/plugin.py,
which runs each under sp-isolate (runner/execute.py) and finishes the run
(runner/finish.py) at the end of the session. This module checks the
options a host run takes and starts pytest with the configuration.

Options: PRELOAD (a library loaded into every probe), WRAP (a command
around every probe), LIBC=musl (the static musl probes), ARCH (another
CPU's static probes under qemu-user, with this machine's sp-isolate),
HOST=1 (no namespaces)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import arch as arch_mod, discover
from ..errors import UsageError
from . import TARGET_OPTIONS, Target

ROOT = discover.ROOT


class Host(Target):
    accepts = frozenset(TARGET_OPTIONS)

    def label(self) -> str:
        return "host"

    def check(self, cfg) -> None:
        if cfg.wrap and cfg.preload:
            raise UsageError("WRAP and PRELOAD do not combine: the library would be loaded into "
                             "the wrapper too")
        if cfg.arch:
            for what, on in (("PRELOAD", cfg.preload), ("WRAP", cfg.wrap),
                             ("LIBC=musl", cfg.libc == "musl"), ("HOST", cfg.host)):
                if on:
                    raise UsageError("ARCH=%s does not combine with %s (the probes run under "
                                     "qemu-user)" % (cfg.arch, what))

    def packages(self, cfg) -> tuple:
        """What the registry's presets of this target that the options
        match need: WRAP=proot -> proot, PRELOAD=socket_wrapper's library ->
        libsocket-wrapper."""
        from . import registry
        out = []
        for e in registry.ENTRIES:
            if e.target == "host:Host" and e.options and all(
                    _matches(cfg, k, v) for k, v in e.options.items()):
                out += [p for p in e.packages if p not in out]
        return tuple(out)

    def build_dir(self, cfg) -> Path:
        build = Path(cfg.build)
        if cfg.arch:
            native = build / "sp-isolate"   # the harness stays native: runner/arch.py
            build = build / cfg.arch
            if not (build / "sp-isolate").exists():
                raise UsageError("the %s probes are not built: run `make check ARCH=%s`"
                                 % (cfg.arch, cfg.arch))
            try:
                arch_mod.emulator(build / "sp-isolate")
            except arch_mod.ArchError as e:
                raise UsageError(str(e))
            if not native.exists():
                raise UsageError("%s is not built: run `make check ARCH=%s` (it builds first)"
                                 % (native, cfg.arch))
            return build
        if cfg.libc == "musl":
            build = build / "musl"
            if not (build / "sp-isolate").exists():
                raise UsageError("the static musl probes are not built: run `make check LIBC=musl`")
        if not (build / "sp-isolate").exists():
            raise UsageError("%s/sp-isolate is not built: run `make check` (it builds first)"
                             % build)
        return build

    def selection(self, cfg, build: Path) -> list:
        """TEST words -> pytest node ids (REPEAT: NAME@1..NAME@N);
        unknown names are errors. With FAMILY, only that family's items."""
        if not cfg.tests:
            return ["cases"]
        nodes = []
        for _, matches in discover.select(cfg.tests, build, cfg.family):
            for i in matches:
                fam = "" if i.family == "none" else "[%s]" % i.family
                nodes.append("cases/%s.c::%s%s" % (i.probe, i.test, fam))
        if cfg.repeat > 1:
            nodes = ["%s@%d" % (n, r) for n in nodes for r in range(1, cfg.repeat + 1)]
        return nodes

    def run(self, cfg, say=None) -> int:
        """Run the selection under pytest; the exit status."""
        if cfg.wrap and shutil.which(cfg.wrap_words[0]) is None:
            raise UsageError("WRAP command '%s' is not installed or not on PATH"
                             % cfg.wrap_words[0])
        build = self.build_dir(cfg)
        selection = self.selection(cfg, build)
        extra = dict(cfg.extra, build=str(build))
        if cfg.arch:
            extra["isolate"] = str(Path(cfg.build) / "sp-isolate")
        import pytest
        os.chdir(ROOT)
        rc = pytest.main(pytest_args(cfg.with_(extra=extra)) + selection)
        if rc == pytest.ExitCode.NO_TESTS_COLLECTED:
            raise UsageError("no test matched the selection (check -k/-m/--family)")
        # The exit-status contract (README): 0 every Must holds, 1 a Must
        # failed (or an item broke, crashed or timed out), 2 usage or
        # set-up error (pytest's usage and internal errors, an unwritable
        # report).
        if rc == pytest.ExitCode.INTERRUPTED:
            return 130
        return int(rc) if rc in (0, 1) else 2


def _matches(cfg, option: str, value) -> bool:
    """Does a preset's option match the run's? (WRAP: its command)"""
    if option == "wrap":
        return bool(cfg.wrap) and cfg.wrap_words[:1] == value.split()[:1]
    return getattr(cfg, option) == value


def pytest_args(cfg) -> list:
    """pytest's command line for a run configuration: the configuration
    itself travels as one option (the plugin, and xdist's workers, read it)."""
    args = ["-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT), "-p", "no:cacheprovider",
            "--sp-config", cfg.to_json()]
    if cfg.keyword:
        args += ["-k", cfg.keyword]
    if cfg.marker:
        args += ["-m", cfg.marker]
    return args + ["-v"] * cfg.verbose + (["-q"] if cfg.quiet else [])
