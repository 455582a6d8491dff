"""The tensor work of a transfer: apply the planned :class:`~plancheck.remedies.transfer_plan.Step` s to a source
tensor.

Each rule, on its axis of a (transposed) convolution weight:

* ``kernel-average`` (3 -> 1): the mean over the axis (nnU-Net master's ``adapt_conv_kernel_size``);
  on inputs constant along that axis the output is the source's.
* ``kernel-centre`` (1 -> 3): the source kernel in the centre, zeros elsewhere: exactly the
  source's function.
* ``stride-average`` (transposed convolution 2 -> 1): the mean of the two taps.
* ``stride-repeat`` (transposed convolution 1 -> 2): the tap repeated: the source's output,
  upsampled by nearest neighbour.
* ``channels-repeat`` (input channels 1 -> N): the stem weights repeated N times and divided
  by N (nnU-Net master's rule): the same output when every channel carries the same image.
* ``channel-map``: target channel c takes source channel i, the mean of the source channels
  (``mean``), or keeps nnU-Net's initialisation (``new``).

Spatial rules run first, channel rules last (they commute: both are linear and act on
different axes), so ``new`` channels come from the initialised tensor of the target's shape.
Arithmetic is done in float32 for float32 weights (else float64), the result cast to the target's dtype.
"""

from __future__ import annotations

import typing as t

from plancheck.remedies.transfer_plan import Step

if t.TYPE_CHECKING:
    import torch

__all__ = ["apply_steps"]

_SPATIAL = ("kernel-average", "kernel-centre", "stride-average", "stride-repeat")


def apply_steps(steps: t.Sequence[Step], source: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """The target tensor made from ``source`` by ``steps``; ``initial`` is the target's initialised tensor."""
    import torch

    if not steps:
        return source.to(initial.dtype)
    # float32 weights are adapted in float32 (means of 2 or 3 values, sums of N); anything else in float64
    work = torch.float32 if source.dtype == initial.dtype == torch.float32 else torch.float64
    x = source.detach().to(work)
    for step in sorted(steps, key=lambda s: s.rule not in _SPATIAL):
        axis = step.axis
        if step.rule in ("kernel-average", "stride-average"):
            x = x.mean(dim=axis, keepdim=True)
        elif step.rule == "kernel-centre":
            pad = torch.zeros_like(x)
            x = torch.cat([pad, x, pad], dim=axis)
        elif step.rule == "stride-repeat":
            x = torch.cat([x, x], dim=axis)
        elif step.rule == "channels-repeat":
            x = torch.cat([x] * step.target, dim=axis) / step.target
        elif step.rule == "channel-map":
            init = initial.detach().to(work)
            slices = []
            for c, entry in enumerate(step.channel_map or ()):
                if entry == "new":
                    slices.append(init.narrow(axis, c, 1))
                elif entry == "mean":
                    slices.append(x.mean(dim=axis, keepdim=True))
                else:
                    slices.append(x.narrow(axis, int(entry), 1))
            x = torch.cat(slices, dim=axis)
        else:  # pragma: no cover - the planner emits only the rules above
            raise ValueError(f"unknown rule {step.rule}")
    if tuple(x.shape) != tuple(initial.shape):  # pragma: no cover - the planner checked the shapes
        raise ValueError(f"rule result {tuple(x.shape)} does not match the target {tuple(initial.shape)}")
    return x.to(initial.dtype)
