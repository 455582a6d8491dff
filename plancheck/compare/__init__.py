"""Compare and attribute: shape tables under nnU-Net's loading rule, plans field by field, and the field behind
each mismatch."""
