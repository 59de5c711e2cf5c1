"""User-mode Linux (Debian's user-mode-linux package): the guest kernel runs
as host processes, the root is a hostfs directory, the stream a file in it.
No accelerator is involved.

UML runs the guest's processes as host processes. As root it runs as
process 1 of a PID namespace of its own (unshare --kill-child, which dies
with the runner), so even a runner killed outright (SIGKILL) takes every
one of them along; Ctrl-C and SIGTERM kill its whole session either way."""
from __future__ import annotations

import os
import shutil

from .. import guest
from . import Target


class Uml(Target):
    kind = "uml"

    def prepare(self, say) -> None:
        if not guest.UML.exists():
            raise guest.GuestError("User-mode Linux is not installed (apt-get install user-mode-linux)")

    def boot(self, static, work, tests, item_timeout, bound_s, on_stream, say) -> str:
        root = guest.build_root(work / "root", static, guest.uml_modules())
        tmp = work / "umltmp"  # UML maps its memory here: not noexec, not small
        tmp.mkdir(exist_ok=True)
        self.stream_path = root / "out" / "stream"
        self.console = work / "console.log"
        cmd = _own_pid_namespace() + [str(guest.UML), "mem=256M", "rootfstype=hostfs", "rootflags=%s" % root, "rw",
               "init=/init", "con=null", "con0=null,fd:1", "ssl=null", "quiet",
               "sockprobe.out=/out/stream"] + guest.init_args(item_timeout, tests)
        return guest._run_bounded(cmd, self.console, bound_s, env=dict(os.environ, TMPDIR=str(tmp)),
                                  stream=self.stream_path, boot_bound_s=self.boot_bound_s,
                                  on_stream=on_stream)

    def environment(self) -> dict:
        return {"guest": "uml", "guest_kernel_image": str(guest.UML)}


def _own_pid_namespace() -> list:
    if os.geteuid() == 0 and shutil.which("unshare"):
        return ["unshare", "--pid", "--fork", "--kill-child", "--"]
    return []
