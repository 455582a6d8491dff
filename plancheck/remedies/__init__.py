"""Remedy: rewrite the target's plans (``--fix``), plan and adapt a transfer, and the nnU-Net commands to run next."""
