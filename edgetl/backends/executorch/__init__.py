"""ExecuTorch with the XNNPACK delegate: a `.pte` program lowered from torch.export."""

from __future__ import annotations

import logging

# Importing executorch makes torch log, once per process, a deprecation of torchao's own
# registration ("<enum 'KernelPreference'> is an Enum subclass ... register_constant()"):
# a line for torch's and torchao's maintainers, not for a user running `edgetl bench`.
_TORCHAO_ENUM = "is an Enum subclass and is now natively supported"


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _TORCHAO_ENUM not in record.getMessage()


def quiet_imports() -> None:
    """Drop that one log line (idempotent); every other torch message still shows."""
    logger = logging.getLogger("torch.utils._pytree")
    if not any(isinstance(f, _Quiet) for f in logger.filters):
        logger.addFilter(_Quiet())
