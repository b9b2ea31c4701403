"""The two kinds of failure, mapped to exit codes: 1 = a check failed, 2 = bad input."""


class EdgetlError(Exception):
    """Bad usage or bad input: the message names the file or option at fault and what to do."""

    exit_code = 2


class CheckFailed(Exception):
    """A measured check failed (parity, accuracy budget, latency regression)."""

    exit_code = 1
