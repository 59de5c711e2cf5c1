"""The target seam: one registry, one rule for the options a target
accepts, and a new way of running as one StreamTarget subclass (here a
launcher that runs the static probes through the sh runner on this
machine, as a sandbox's launcher would inside the sandbox)."""
import json
import os
from pathlib import Path

import pytest

from conftest import ROOT
from runner import config, proc, rootfs
from runner.errors import UsageError
from runner.targets import TARGET_OPTIONS, registry
from runner.targets.stream import StreamTarget

STATIC = ROOT / "build" / "static"


def cfg(**kw):
    return config.Config(**kw)


def test_every_entry_is_whole_and_named_once():
    names = [e.name for e in registry.ENTRIES]
    labels = [e.label for e in registry.ENTRIES]
    assert len(set(names)) == len(names) and len(set(labels)) == len(labels)
    kernels = registry.kernel_names()
    assert len(set(kernels)) == len(kernels) and {"uml", "6.1", "6.12"} <= set(kernels)
    for e in registry.ENTRIES:
        assert e.cls().__name__, e.name             # the class imports
        assert set(e.options) <= set(config.BY_NAME), e.name
        assert e.memory_mb > 0 and e.seconds > 0
    assert registry.matrix()[0].name == registry.kernels()[0].name == "host"


def test_expectation_files_name_registry_entries():
    names = {e.name for e in registry.ENTRIES}
    for f in (ROOT / "expectations").glob("*.tsv"):
        assert f.stem in names, "expectations/%s: no target of that name" % f.name


@pytest.mark.parametrize("options,name", [
    ({}, "host"), ({"kernel": "uml"}, "uml"), ({"kernel": "6.12"}, "qemu-6.12"),
    ({"libc": "musl"}, "host"), ({"target": "ssh://u@h"}, "ssh")])
def test_choose_reads_the_registry(options, name):
    assert registry.choose(cfg(**options)).name == name


def test_a_kernel_image_path_is_qemu(tmp_path):
    image = tmp_path / "bzImage"
    image.write_bytes(b"x")
    e = registry.choose(cfg(kernel=str(image)))
    t = e.make(cfg(kernel=str(image)))
    assert e.name == "qemu-image" and t.image == image.resolve()


def test_an_unknown_kernel_lists_every_registered_one():
    with pytest.raises(UsageError, match="KERNEL must be uml, 6.1, 6.12"):
        registry.choose(cfg(kernel="nosuch"))


@pytest.mark.parametrize("option", sorted(TARGET_OPTIONS))
def test_the_one_rule_refuses_what_a_target_does_not_accept(option, tmp_path):
    value = {"preload": "/x.so", "wrap": "true", "libc": "musl", "arch": "aarch64",
             "host": True}[option]
    c = cfg(kernel="uml", **{option: value})
    with pytest.raises(UsageError) as e:
        registry.choose(c).make(c).check_options(c)
    assert "does not combine with KERNEL=uml" in str(e.value)


def test_make_check_refuses_a_combination_before_installing_anything():
    import subprocess
    r = subprocess.run(["make", "--no-print-directory", "-n", "check", "KERNEL=uml", "HOST=1"],
                       cwd=ROOT, capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items()
                            if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")})
    assert r.returncode == 2 and "deps.sh" not in r.stdout
    assert "HOST=1 does not combine with KERNEL=uml" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


class Launcher(StreamTarget):
    """A stand-in for a sandbox launcher: the sh runner over the static
    probes, started the way a launcher would start it."""
    kind = "launcher"
    boot_bound_s = 30.0
    prefix = "launcher"

    def start(self, static, work, tests, item_timeout, bound_s, on_stream, say):
        self.stream_path = work / "stream"
        self.console = work / "launcher.log"
        cmd = ["sh", str(rootfs.RUN), "-d", str(static), "-o", str(self.stream_path),
               "-t", str(max(1, int(item_timeout)))] + list(tests)
        return proc.run_bounded(cmd, self.console, bound_s, stream=self.stream_path,
                                boot_bound_s=self.boot_bound_s, on_stream=on_stream)

    def environment(self):
        return {"guest": "launcher", "launcher": "sh"}


@pytest.mark.skipif(not (STATIC / "sp-isolate").exists(), reason="the static probes are not built (make static)")
def test_a_launcher_target_is_one_class(tmp_path, capsys):
    c = cfg(timeout=10.0, reports=str(tmp_path / "r"), tests=("udp",))
    t = Launcher()
    t.check_options(c)
    rc = t.run(c, work=tmp_path / "work")
    out = capsys.readouterr().out
    assert rc == 0, out
    doc = json.loads((tmp_path / "r" / "latest" / "report.json").read_text())
    assert doc["results"] and {r["verdict"] for r in doc["results"]} == {"pass"}
    assert {r["probe"] for r in doc["results"]} == {"udp"}
    env = doc["environment"]
    assert env["guest"] == "launcher" and env["isolation"].startswith("guest (")
    assert "verdicts: %d pass" % len(doc["results"]) in out
    assert Path(tmp_path / "r" / "latest" / "results.ktap").is_file()
