"""A network class plancheck has never seen: PlainConvUNet with its modules under other names.

Allowed in tests with ``allow_import=("custom_architectures",)``, the same mechanism a lab
uses (``--allow-import``) for its own architectures.
"""

from __future__ import annotations

from dynamic_network_architectures.architectures.unet import PlainConvUNet


class RenamedUNet(PlainConvUNet):
    """Same weights as PlainConvUNet, registered as ``contracting.*`` and ``expanding.*``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_module("contracting", self._modules.pop("encoder"))
        self.add_module("expanding", self._modules.pop("decoder"))
