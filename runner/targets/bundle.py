"""The bundle target: a stream the bundle's POSIX sh runner wrote on some
other machine (`sh run -o FILE`, from `make dist`), brought back and
ingested (`make ingest STREAM=FILE`). Nothing runs here: run() reads the
stream (protocol.parse_framed) and hands its records to the one finish
step, like any other target. The bundle itself is made by runner/dist.py;
the ssh target (ssh.py) runs it on a remote live."""
from __future__ import annotations

import re
from pathlib import Path

from .. import dist, finish, protocol
from . import Target


class Bundle(Target):
    refusal = "the stream was written by the bundle as it is"

    def __init__(self, stream: Path | None = None, entry=None):
        super().__init__(entry)
        self.stream = stream
        self.text = ""

    def label(self) -> str:
        return "bundle"

    def read(self) -> dict:
        """The stream, parsed; one clear line when it is none."""
        try:
            self.text = self.stream.read_text(errors="replace")
        except OSError as e:
            raise dist.DistError("cannot read the stream %s: %s" % (self.stream, e.strerror))
        if not re.search(r"^@SP1 (guest|item) ", self.text, re.M):
            raise dist.DistError("%s is not a sockprobe stream (no '@SP1 guest' or '@SP1 item' "
                                 "line; write one with the bundle's `sh run -o FILE`)"
                                 % self.stream)
        parsed = protocol.parse_framed(self.text, dist.header_timeout(self.text), dist.CUT_SHORT)
        if not parsed["results"]:
            raise dist.DistError("the stream %s has no items: the run stopped before its first "
                                 "item" % self.stream)
        return parsed

    def environment(self) -> dict:
        m = re.search(r"^@SP1 guest .*\bbundle=(\S+)", self.text, re.M)
        return {"target": "bundle", "bundle": m.group(1) if m else None,
                "stream": str(self.stream)}

    def run(self, cfg, say=print) -> int:
        parsed = self.read()
        tmo = dist.header_timeout(self.text)
        env = finish.stream_environment(parsed, self.environment(), "runner", tmo)
        doc, d = finish.complete(parsed["results"], env, Path(cfg.reports),
                                 expectations=cfg.expect, partial=not parsed["done"],
                                 started=None, finished=self.stream.stat().st_mtime)
        if doc.get("partial"):
            say("ingest: the stream ends before the run finished; partial report")
        say("\n".join(finish.lines(doc, d)))
        return finish.status(doc)
