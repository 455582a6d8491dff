"""The nnU-Net command lines plancheck prints, built in one place with one rule for each part.

- The dataset is its ID (:func:`plancheck.inputs.datasets.command_id`).
- ``-tr``: the fine-tuning trainer is the user's choice; a command names the trainer the
  check assumed for the target (``--target-trainer``, else the source's trainer), and
  leaves ``-tr`` out only for nnU-Net's default ``nnUNetTrainer``. Every command
  (``check --fix``, ``transfer``) follows this rule.
- ``-device``: never added silently. On a machine without CUDA, nnU-Net's default
  ``-device cuda`` stops with "Torch not compiled with CUDA enabled" (or finds no GPU):
  :func:`device_note` says that ``-device cpu`` is needed there.
"""

from __future__ import annotations

import os
import shlex
import sys
import typing as t

from plancheck.inputs.datasets import command_id

__all__ = ["DEFAULT_TRAINER", "device_note", "plans_identifier", "preprocess_command", "train_command", "trainer_note"]

if t.TYPE_CHECKING:
    from plancheck.network.spec import Side

#: nnU-Net's default trainer: ``-tr`` is left out for it.
DEFAULT_TRAINER = "nnUNetTrainer"


def train_command(dataset_name: str | None, configuration: str, fold: str | int | None, plans_identifier: str, *,
                  trainer: str | None, pretrained_weights: str, fold_placeholder: str = "FOLD") -> str:
    """``nnUNetv2_train ID CONFIGURATION FOLD -p PLANS [-tr TRAINER] -pretrained_weights WEIGHTS``."""
    parts = ["nnUNetv2_train", command_id(dataset_name), shlex.quote(configuration),
             fold_placeholder if fold is None else shlex.quote(str(fold)), "-p", shlex.quote(plans_identifier)]
    name = trainer_name(trainer)
    if name and name != DEFAULT_TRAINER:
        parts += ["-tr", shlex.quote(name)]
    parts += ["-pretrained_weights", shlex.quote(pretrained_weights)]
    return " ".join(parts)


def finetune_train_command(dataset_name: str | None, configuration: str, plans_identifier: str, *, trainer: str,
                           pretrained_weights: str, trainers_folder: str, ext_trainer: bool = True,
                           installed: bool = False, fold: str | int | None = None) -> str:
    """The ``nnUNetv2_train`` command with a fine-tuning trainer, as the installed nnU-Net finds it
    (:mod:`plancheck.finetune.lookup`).

    - nnunetv2 >= 2.8 (``ext_trainer``): ``nnUNet_extTrainer=FOLDER:"${nnUNet_extTrainer:-}" nnUNetv2_train ...``;
      nnU-Net finds plancheck's trainers and still the user's own (an empty entry is skipped by its lookup).
    - 2.6/2.7 with the module of ``plancheck trainers --install`` in place (``installed``): the plain command.
    - 2.6/2.7 without it: ``plancheck trainers --install && nnUNetv2_train ...``, so the line runs as printed.
    """
    command = train_command(dataset_name, configuration, fold, plans_identifier, trainer=trainer,
                            pretrained_weights=pretrained_weights)
    if installed:
        return command
    if ext_trainer:
        return f'nnUNet_extTrainer={shlex.quote(trainers_folder)}:"${{nnUNet_extTrainer:-}}" ' + command
    return "plancheck trainers --install && " + command


def preprocess_command(dataset_name: str | None, plans_identifier: str, configuration: str) -> str:
    return (f"nnUNetv2_preprocess -d {command_id(dataset_name)} -plans_name {shlex.quote(plans_identifier)} "
            f"-c {shlex.quote(configuration)}")


def trainer_name(trainer: str | None) -> str | None:
    """A dotted trainer (``--allow-import pkg.Trainer``) is named by its class, as ``-tr`` takes it."""
    return None if not trainer else trainer.rsplit(".", 1)[-1]


def trainer_note(trainer: str | None, by: str | None = None) -> str:
    """What the printed command assumes about the fine-tuning trainer, and how to choose another."""
    name = trainer_name(trainer) or DEFAULT_TRAINER
    why = f" ({by})" if by else (" (nnU-Net's default)" if name == DEFAULT_TRAINER else "")
    return (f"the command trains with {name}{why}, the trainer this check built the target network with; the "
            "fine-tuning trainer is your choice: check another with --target-trainer and pass it as -tr")


def device_note() -> str | None:
    """The ``-device cpu`` note, on a machine where torch sees no CUDA device (``None`` elsewhere).

    Asks torch only when it is already imported (every command that prints these has
    built a network); never imports it.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        available = bool(torch.cuda.is_available())
    except Exception:  # a broken CUDA set-up is no CUDA for nnU-Net either
        available = False
    if available:
        return None
    return ("this machine has no CUDA device: nnUNetv2_train's default -device cuda stops with 'Torch not "
            "compiled with CUDA enabled' (or no GPU found); add -device cpu to run these commands here")


def plans_identifier(side: Side) -> str:
    """The name nnU-Net knows the plans by: the file name (``-p``), else the ``plans_name`` field."""
    if side.plans.path:
        return os.path.splitext(os.path.basename(side.plans.path))[0]
    return side.plans.plans_name or "nnUNetPlans"

