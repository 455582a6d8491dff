"""The folder ``nnUNet_extTrainer`` names (see :func:`plancheck.finetune.trainers_folder`)."""
