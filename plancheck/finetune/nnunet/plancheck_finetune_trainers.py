"""The folder nnU-Net searches when ``nnUNet_extTrainer`` names it (``plancheck trainers --path``).

nnU-Net imports every module here as a top-level module and takes the class by name; this one
only re-exports plancheck's fine-tuning trainers (:mod:`plancheck.finetune.trainer`).
"""

from plancheck.finetune.trainer import (  # noqa: F401 - found by name by nnU-Net's lookup
    nnUNetTrainerFinetune,
    nnUNetTrainerFinetune_100epochs,
    nnUNetTrainerFinetune_250epochs,
    nnUNetTrainerFinetuneAdamW,
)
