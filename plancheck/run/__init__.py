"""Run: nnU-Net's real training step and its memory, for ``verify``."""
