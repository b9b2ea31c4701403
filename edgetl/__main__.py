"""`python -m edgetl`: what torchrun starts on every rank (`torchrun ... -m edgetl finetune`)."""

from edgetl.cli import main

main()
