"""edgetl: transfer learning for edge devices, from fine-tuning to the on-device benchmark."""

__version__ = "0.1.0"
