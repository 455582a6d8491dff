"""Trainers plancheck has never seen, that build another network than their plans describe.

``nnUNetTrainerWide`` has the signature of the installed nnU-Net's ``build_network_architecture``
(managers since 2.7, class name and kwargs before); ``nnUNetTrainerOldWide`` always has the old one.

Allowed in tests with ``allow_import=("custom_trainers",)`` / ``--allow-import custom_trainers``,
as a lab names the module of its own trainers.
"""

from __future__ import annotations

import copy
import inspect

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans


def _wider(arch_kwargs: dict) -> dict:
    kwargs = copy.deepcopy(arch_kwargs)
    kwargs["features_per_stage"] = [2 * f for f in kwargs["features_per_stage"]]
    return kwargs


if "plans_manager" in inspect.signature(nnUNetTrainer.build_network_architecture).parameters:

    class nnUNetTrainerWide(nnUNetTrainer):
        """nnU-Net >= 2.7 signature: twice the features of every stage."""

        @staticmethod
        def build_network_architecture(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                                       enable_deep_supervision=True):
            configuration_manager.configuration["architecture"]["arch_kwargs"] = _wider(
                configuration_manager.network_arch_init_kwargs
            )
            return nnUNetTrainer.build_network_architecture(
                plans_manager, configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision
            )

else:  # nnU-Net 2.4-2.6: a lab writes its trainer in the signature its nnU-Net calls

    class nnUNetTrainerWide(nnUNetTrainer):  # type: ignore[no-redef]
        """nnU-Net 2.4-2.6 signature: twice the features of every stage."""

        @staticmethod
        def build_network_architecture(architecture_class_name, arch_init_kwargs, arch_init_kwargs_req_import,
                                       num_input_channels, num_output_channels, enable_deep_supervision=True):
            return nnUNetTrainer.build_network_architecture(
                architecture_class_name, _wider(arch_init_kwargs), arch_init_kwargs_req_import,
                num_input_channels, num_output_channels, enable_deep_supervision
            )


class nnUNetTrainerOldWide(nnUNetTrainer):
    """The pre-2.7 signature (nnU-Net 2.4-2.6): class name and kwargs instead of the managers."""

    @staticmethod
    def build_network_architecture(architecture_class_name, arch_init_kwargs, arch_init_kwargs_req_import,
                                   num_input_channels, num_output_channels, enable_deep_supervision=True):
        return get_network_from_plans(
            architecture_class_name,
            _wider(arch_init_kwargs),
            arch_init_kwargs_req_import,
            num_input_channels,
            num_output_channels,
            allow_init=True,
            deep_supervision=enable_deep_supervision,
        )


class nnUNetTrainerWideLonger(nnUNetTrainerWide):
    """Inherits the override: found through the MRO, not by its own body."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_epochs = 2000


class nnUNetTrainerJustLonger(nnUNetTrainer):
    """Changes nothing about the network: plancheck keeps its plans-only build."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_epochs = 2000
