"""The errors a run reports as one line and exit status 2 (a usage or
set-up error): the command line catches UsageError and its kinds, prints
`sockprobe: error: MESSAGE` and never a traceback."""
from __future__ import annotations


class UsageError(Exception):
    """Something the user can fix: a wrong option, a missing package or
    build, a report directory that cannot be written."""


class GuestError(UsageError):
    """A target could not be prepared or run (a kernel to fetch, a VM that
    did not boot, a remote that cannot be reached)."""
