"""What nnU-Net itself does: real CPU networks and its real ``load_pretrained_weights``.

Tests compare plancheck's answers against this module. It uses nnU-Net's code for every
decision: ``PlansManager`` for the configuration, ``determine_num_input_channels`` and
the label manager for channels, ``nnUNetTrainer.build_network_architecture`` for the
network, and ``nnunetv2.run.load_pretrained_weights`` for the verdict.

Weight files are written with placeholder values: each tensor is a one-element storage
expanded to the real shape (stride 0). nnU-Net's loader reads only keys and shapes to
decide, then copies values, which works the same from an expanded tensor; this keeps a
30-100 M parameter network's weight file at a few kilobytes.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import typing as t
from dataclasses import dataclass

import torch

from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

Json = t.Any


@dataclass(frozen=True)
class Outcome:
    """nnU-Net's verdict: loaded, or the key and reason of its AssertionError."""

    loaded: bool
    key: str | None = None
    reason: str | None = None  # "missing" | "shape"


def channels(plans: dict, configuration: str, dataset_json: dict | None) -> tuple[int, int]:
    with contextlib.redirect_stdout(io.StringIO()):
        pm = PlansManager(plans)
        cm = pm.get_configuration(configuration)
        if dataset_json is None:
            if cm.previous_stage_name is not None:
                # nnU-Net sizes a cascade's input with the previous stage's labels: it needs the dataset.json
                raise ValueError("a cascade configuration needs its dataset.json to size the input")
            return len(cm.normalization_schemes), 2
        return (
            determine_num_input_channels(pm, cm, dataset_json),
            pm.get_label_manager(dataset_json).num_segmentation_heads,
        )


def build_real(plans: dict, configuration: str, dataset_json: dict | None,
               class_path_override: str | None = None) -> torch.nn.Module:
    """The network nnU-Net's trainer builds, on the CPU, with real memory."""
    import warnings

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = PlansManager(plans)
        cm = pm.get_configuration(configuration)
        if class_path_override is not None:
            cm.configuration["architecture"]["network_class_name"] = class_path_override
        n_in, n_out = channels(plans, configuration, dataset_json)
        return build_as_nnunet(nnUNetTrainer, pm, cm, n_in, n_out)


def nnunet_signature() -> str:
    """``"new"`` when the installed nnU-Net (>= 2.7) passes the managers to build_network_architecture, else ``"old"``.

    Read from nnUNetTrainer itself, not from plancheck: the oracle calls the trainer as the
    installed nnU-Net's own ``initialize`` does.
    """
    import inspect

    params = inspect.signature(nnUNetTrainer.build_network_architecture).parameters
    return "new" if "plans_manager" in params else "old"


def build_as_nnunet(trainer_cls: type, pm: PlansManager, cm, n_in: int, n_out: int,
                    deep_supervision: bool = True) -> torch.nn.Module:
    """``trainer_cls.build_network_architecture`` called with the arguments the installed nnU-Net passes."""
    if nnunet_signature() == "new":
        return trainer_cls.build_network_architecture(pm, cm, n_in, n_out, deep_supervision)
    return trainer_cls.build_network_architecture(
        cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import,
        n_in, n_out, deep_supervision)


def shapes(network: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in network.state_dict().items()}


def save_placeholder_weights(network_or_shapes: torch.nn.Module | dict, path: str | os.PathLike) -> None:
    """Save ``{"network_weights": ...}`` with real keys and shapes, placeholder values."""
    table = shapes(network_or_shapes) if isinstance(network_or_shapes, torch.nn.Module) else network_or_shapes
    weights = {k: torch.zeros(1).expand(s) if s else torch.zeros(()) for k, s in table.items()}
    torch.save({"network_weights": weights}, path)


_MISSING = re.compile(r"^Key (\S+) is missing in the pretrained model weights")
_SHAPE = re.compile(r"^The shape of the parameters of key (\S+) is not the same")


def load_outcome(target_network: torch.nn.Module, weights_file: str | os.PathLike) -> Outcome:
    """Run nnU-Net's load_pretrained_weights and turn its assertion into an Outcome."""
    import warnings

    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # a meta-device target makes load_state_dict warn that copying is a no-op; the verdict is the same
            warnings.simplefilter("ignore")
            load_pretrained_weights(target_network, str(weights_file), verbose=False)
    except AssertionError as e:
        text = str(e)
        m = _MISSING.match(text)
        if m:
            return Outcome(False, m.group(1), "missing")
        m = _SHAPE.match(text)
        if m:
            return Outcome(False, m.group(1), "shape")
        raise
    return Outcome(True)


def direct_sets(source: dict, target: dict) -> dict[str, set[str]]:
    """mismatch / missing / unused keys from the two real state_dicts, by nnU-Net's rule."""
    skip = ".seg_layers."
    return {
        "mismatch": {k for k in target if skip not in k and k in source and source[k] != target[k]},
        "missing": {k for k in target if skip not in k and k not in source},
        "unused": {k for k in source if skip not in k and k not in target},
    }


def nnunet_checkpoint(net: torch.nn.Module, plans: dict, dataset_json: dict, configuration: str,
                      trainer_name: str = "nnUNetTrainer", weights: dict | None = None, step: bool = False) -> dict:
    """What nnUNetTrainer.save_checkpoint writes (init_args holds a torch.device, logging numpy floats).

    ``step`` takes one optimizer step first, so that the optimizer state holds momentum buffers.
    """
    import numpy as np

    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    if step:
        for p in net.parameters():
            p.grad = torch.ones_like(p)
        opt.step()
    return {
        "network_weights": net.state_dict() if weights is None else weights,
        "optimizer_state": opt.state_dict(),
        "grad_scaler_state": torch.amp.GradScaler("cpu").state_dict(),
        "logging": {
            "mean_fg_dice": [np.float64(0.5), np.float64(0.6)],
            "ema_fg_dice": [np.float64(0.5), np.float64(0.51)],
            "dice_per_class_or_region": [[np.float64(0.4), np.float64(0.6)]] * 2,
            "train_losses": [np.float64(-0.1), np.float64(-0.2)],
            "val_losses": [np.float64(-0.05), np.float64(-0.15)],
            "lrs": [0.01, 0.0099],
            "epoch_start_timestamps": [1.0, 2.0],
            "epoch_end_timestamps": [1.5, 2.5],
        },
        "_best_ema": np.float64(0.51),
        "current_epoch": 2,
        "init_args": {
            "plans": plans,
            "configuration": configuration,
            "fold": 0,
            "dataset_json": dataset_json,
            "device": torch.device("cuda", 0),
        },
        "trainer_name": trainer_name,
        "inference_allowed_mirroring_axes": (0, 1, 2) if configuration.startswith("3d") else (0, 1),
    }


def moved_checkpoint(plans_file: str | os.PathLike, out: str | os.PathLike, configuration: str = "3d_fullres",
                     seed: int = 0) -> dict:
    """Save an nnU-Net checkpoint of the network nnU-Net builds from ``plans_file`` (its dataset.json beside it),
    every parameter moved off its initial value, per tensor (nnU-Net's decoder holds the encoder under a second
    key, so moving per key would make the aliases disagree). Returns the saved weights."""
    import json
    import pathlib

    path = pathlib.Path(plans_file)
    plans = json.loads(path.read_text())
    dataset_json = json.loads((path.parent / "dataset.json").read_text())
    torch.manual_seed(seed)
    net = build_real(plans, configuration, dataset_json)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.rand_like(p) + 0.5)
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    torch.save(nnunet_checkpoint(net, plans, dataset_json, configuration, weights=weights), out)
    return weights
