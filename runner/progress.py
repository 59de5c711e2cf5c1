"""Progress for long work (a guest boot, a kernel matrix): what it is doing,
how far along, roughly how long is left. Short runs stay quiet: nothing is
said before QUIET_S seconds have passed. On a terminal the line is
rewritten in place; elsewhere (CI logs, pipes) a line at most every
EVERY_S seconds. Written to stderr, so stdout keeps only results.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

QUIET_S = 10.0
EVERY_S = 10.0


def duration(s: float) -> str:
    s = max(0, int(round(s)))
    return "%d s" % s if s < 90 else "%d min %02d s" % (s // 60, s % 60)


def step_times(path: Path, guess: dict, took: dict | None = None) -> dict:
    """Seconds each step of a long run took last time, a rough guide for
    the estimates of the next: read from path over the guesses, or, given
    took, written there (best effort: only a guide)."""
    if took is None:
        try:
            return dict(guess, **{k: float(v) for k, v in json.loads(path.read_text()).items()})
        except (OSError, ValueError, AttributeError, TypeError):
            return dict(guess)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(took) + "\n")
    except OSError:
        pass
    return took


class Progress:
    def __init__(self, what: str, total: int, out=None, quiet_s: float = QUIET_S,
                 every_s: float = EVERY_S, clock=time.monotonic):
        self.what, self.total = what, total
        self.out = out if out is not None else sys.stderr
        self.quiet_s, self.every_s, self.clock = quiet_s, every_s, clock
        self.start = clock()
        self.first = None      # when the first unit of work began
        self.done = 0
        self.doing = "starting"
        self.last = None       # when a line was last written
        self.tty = hasattr(self.out, "isatty") and self.out.isatty()
        self.open_line = False

    def update(self, done: int | None = None, doing: str | None = None) -> None:
        now = self.clock()
        if done is not None:
            if self.first is None and done > 0:
                self.first = now
            self.done = done
        if doing is not None:
            self.doing = doing
        if now - self.start < self.quiet_s:
            return
        if self.last is not None and now - self.last < (1.0 if self.tty else self.every_s):
            return
        self.last = now
        self.write(self.line(now))

    def line(self, now: float) -> str:
        text = "%s: %s, %d/%d, %s so far" % (self.what, self.doing, self.done, self.total,
                                            duration(now - self.start))
        left = self.left(now)
        if left is not None:
            text += ", about %s left" % duration(left)
        return text

    def left(self, now: float):
        # Too early to say from the rate: after a few units, a few seconds.
        if self.first is None or self.done < 3 or now - self.first < 2 or self.total <= 0:
            return None
        per = (now - self.first) / self.done
        return per * max(0, self.total - self.done)

    def write(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\033[K" + text)
            self.open_line = True
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        """End the in-place line so the next output starts on its own."""
        if self.open_line:
            self.out.write("\n")
            self.out.flush()
            self.open_line = False
