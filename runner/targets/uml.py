"""User-mode Linux (Debian's user-mode-linux package): the guest kernel runs
as host processes, the root is a hostfs directory, the stream a second
console (the guest's /dev/tty1) written into a host file.
No accelerator is involved.

UML runs the guest's processes as host processes. As root it runs as
process 1 of a PID namespace of its own (unshare --kill-child, which dies
with the runner), so even a runner killed outright (SIGKILL) takes every
one of them along; Ctrl-C and SIGTERM kill its whole session either way."""
from __future__ import annotations

import os
import shutil

from .. import kernels, proc, rootfs
from ..errors import GuestError
from .stream import StreamTarget


class Uml(StreamTarget):
    kind = "uml"

    def prepare(self, say) -> None:
        if not kernels.UML.exists():
            raise GuestError("User-mode Linux is not installed (apt-get install user-mode-linux)")

    def start(self, static, work, tests, item_timeout, bound_s, on_stream, say) -> str:
        root = rootfs.build_root(work / "root", static, kernels.uml_modules())
        tmp = work / "umltmp"  # UML maps its memory here: not noexec, not small
        tmp.mkdir(exist_ok=True)
        # The stream leaves through a console of its own (con1, the
        # guest's /dev/tty1) written straight into a host file: each line
        # is out as it is written, with no sync of the hostfs root.
        self.stream_path = work / "stream"
        self.console = work / "console.log"
        fd = os.open(self.stream_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            cmd = _own_pid_namespace() + [
                str(kernels.UML), "mem=256M", "rootfstype=hostfs", "rootflags=%s" % root, "rw",
                "init=/init", "con=null", "con0=null,fd:1", "con1=null,fd:%d" % fd, "ssl=null",
                "quiet", "sockprobe.out=/dev/tty1"] + rootfs.init_args(item_timeout, tests)
            return proc.run_bounded(cmd, self.console, bound_s, env=dict(os.environ, TMPDIR=str(tmp)),
                                    stream=self.stream_path, boot_bound_s=self.boot_bound_s,
                                    on_stream=on_stream, pass_fds=(fd,))
        finally:
            os.close(fd)

    def environment(self) -> dict:
        return {"guest": "uml", "guest_kernel_image": str(kernels.UML)}


def _own_pid_namespace() -> list:
    if os.geteuid() == 0 and shutil.which("unshare"):
        return ["unshare", "--pid", "--fork", "--kill-child", "--"]
    return []
