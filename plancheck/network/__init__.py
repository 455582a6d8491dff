"""Build: plans + dataset.json to nnU-Net's own network on the meta device, its shape table, layout and memory model."""
