"""`python -m classifier ...`, which torchrun starts once per process: `torchrun --nproc_per_node N -m classifier fit ...`."""

from .cli import main

main()
