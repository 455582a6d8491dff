"""Load: what the user named (plans, dataset.json, checkpoints, nnssl files, declared checks), read without
running code."""
