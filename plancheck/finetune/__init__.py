"""Fine-tuning with a freezing schedule, as trainers stock ``nnUNetv2_train`` runs.

- :mod:`~plancheck.finetune.schedule`: the phases (frozen, warm-up, poly decay), the learning
  rate of each epoch, and the plans entry the trainers read (no torch).
- :mod:`~plancheck.finetune.plans`: ``transfer --schedule``'s plans: the target's own plans under
  a new identifier, with that entry (no torch).
- :mod:`~plancheck.finetune.trainer`: the nnU-Net trainers (torch, nnU-Net; imported only by
  nnU-Net's trainer lookup and by the tests).
- :func:`trainers_folder`: the folder ``nnUNet_extTrainer`` names so that nnU-Net finds them.
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT_TRAINER", "TRAINERS", "trainers_folder"]

#: The fine-tuning trainers (:mod:`plancheck.finetune.trainer`), by name: (epochs, frozen, warm-up, optimizer).
TRAINERS = {
    "nnUNetTrainerFinetune": (1000, 50, 50, "SGD, lr 1e-2 (nnU-Net's default)"),
    "nnUNetTrainerFinetune_250epochs": (250, 25, 25, "SGD, lr 1e-2"),
    "nnUNetTrainerFinetune_100epochs": (100, 10, 10, "SGD, lr 1e-2"),
    "nnUNetTrainerFinetuneAdamW": (1000, 50, 50, "AdamW, lr 3e-4, weight decay 5e-2 (as nnU-Net's Primus trainers)"),
}
DEFAULT_TRAINER = "nnUNetTrainerFinetune"


def trainers_folder() -> str:
    """The folder for ``nnUNet_extTrainer``: nnU-Net 2.8.1's lookup imports its modules and finds the trainers."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "nnunet")
