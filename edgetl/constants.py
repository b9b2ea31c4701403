"""Names the command line needs before any heavy import (the device side has no torch)."""

DEFAULT_BACKBONE = "efficientnet_lite0"
