"""A fine-tuning schedule asked of ``transfer --schedule`` or ``check --fix --schedule``: checked before anything
is written, and the ``nnUNetv2_train`` command that runs it.

- :func:`validate`: the options (``schedule``, ``carried_lr_ratio``, ``schedule_plans``) alone.
- :func:`setup`: the trainer (a fine-tuning trainer), the plans identifier and the path of the plans
  to write, refused before any file is written (an existing file without ``force``).
- :func:`command`: the printed command, as the installed nnU-Net finds the trainer
  (:mod:`plancheck.finetune.lookup`), and a note where that needs ``plancheck trainers --install``.
"""

from __future__ import annotations

import os
import typing as t

from plancheck.errors import OutputExists, UsageError

__all__ = ["command", "setup", "validate"]


def validate(schedule: str | None, carried_lr_ratio: float, schedule_plans: str | None) -> None:
    if schedule is not None:
        from plancheck.finetune.plans import freeze_choice, lr_ratio

        freeze_choice(schedule)
        lr_ratio(carried_lr_ratio)
    elif schedule_plans is not None or carried_lr_ratio != 1.0:
        raise UsageError("`schedule_plans` and `carried_lr_ratio` only make sense with `schedule`")


def setup(plans_file: str | None, default_identifier: str, target_trainer: str | None, allow: t.Iterable[str],
          schedule_plans: str | None, *, force: bool) -> tuple[str, str, str]:
    """``(trainer, plans identifier, plans path)`` for the fine-tuning plans written next to ``plans_file``."""
    from plancheck.finetune import DEFAULT_TRAINER
    from plancheck.finetune.plans import plans_path
    from plancheck.finetune.trainer import nnUNetTrainerFinetune
    from plancheck.network.trainers import load_trainer_class, resolve_trainer

    trainer = target_trainer or DEFAULT_TRAINER
    cls = load_trainer_class(resolve_trainer(trainer, allow=tuple(allow), requested_by="--target-trainer").class_path)
    if not issubclass(cls, nnUNetTrainerFinetune):
        raise UsageError(f"`schedule` needs a fine-tuning trainer (plancheck trainers lists them, or a subclass): "
                         f"`target_trainer` {trainer} is not one")
    identifier = schedule_plans or default_identifier
    path = plans_path(plans_file, identifier)
    if os.path.lexists(path) and not force:
        raise OutputExists("exists; not overwritten (pass `force` to replace it, or choose another `schedule_plans`)",
                           path=path)
    return trainer, identifier, path


def command(dataset_name: str | None, configuration: str, identifier: str, trainer: str,
            pretrained_weights: str, fold: str | int | None = None) -> tuple[str, str | None]:
    """The printed ``nnUNetv2_train`` command, and a note where the installed nnU-Net needs the module install."""
    from plancheck.finetune import trainers_folder
    from plancheck.finetune.lookup import lookup
    from plancheck.remedies.commands import finetune_train_command, trainer_name

    found = lookup()
    line = finetune_train_command(dataset_name, configuration, identifier, trainer=trainer_name(trainer) or trainer,
                                  pretrained_weights=pretrained_weights, trainers_folder=trainers_folder(),
                                  ext_trainer=found.ext_trainer, installed=found.shim_installed, fold=fold)
    return line, None if found.ext_trainer or found.shim_installed else found.describe()
