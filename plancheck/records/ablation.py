"""What ``plancheck ablation`` returns: the arms against nnU-Net's standard baseline, each prepared or refused."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from plancheck.errors import ExitCode
from plancheck.records.base import Rendered

__all__ = ["ARM_DESCRIPTIONS", "Ablation", "Arm"]

Json = t.Any

#: The arms, in order, and what each one separates.
ARM_DESCRIPTIONS = {
    "baseline": "the target's own plans, from scratch: nnU-Net's standard result",
    "unified": "the --fix plans, from scratch: a different network, no pretraining",
    "unified_pretrained": "the --fix plans, with the pretrained weights (-pretrained_weights)",
    "transfer": "the target's own plans, with the weights plancheck transfer carried over",
    "transfer_schedule": "as transfer, fine-tuned with a freezing schedule (plancheck's fine-tuning trainer)",
}


@dataclass(frozen=True)
class Arm:
    name: str
    made: bool
    reason: str | None = None  #: why the arm could not be made
    trainer: str | None = None
    plans: str | None = None  #: plans identifier (``-p``)
    plans_file: str | None = None
    pretrained_weights: str | None = None
    results_folder: str | None = None  #: under $nnUNet_results: DATASET/TRAINER__PLANS__CONFIGURATION
    prepare: tuple[str, ...] = ()  #: commands to run once before training (nnUNetv2_preprocess)
    train: dict[str, str] | None = None  #: fold -> the nnUNetv2_train command
    epochs: int | None = None

    def to_dict(self) -> dict[str, Json]:
        return {
            "name": self.name,
            "description": ARM_DESCRIPTIONS.get(self.name, ""),
            "made": self.made,
            "reason": self.reason,
            "trainer": self.trainer,
            "epochs": self.epochs,
            "plans": self.plans,
            "plans_file": self.plans_file,
            "pretrained_weights": self.pretrained_weights,
            "results_folder": self.results_folder,
            "prepare": list(self.prepare),
            "train": dict(self.train or {}),
        }


@dataclass(frozen=True)
class Ablation(Rendered):
    source: str
    target: str
    dataset: str | None
    configuration: str
    folds: tuple[str, ...]
    arms: tuple[Arm, ...]
    manifest: str | None  #: the manifest written (None: dry run)
    script: str | None
    written: tuple[str, ...] = ()  #: every file written (plans, weights, manifest, script)
    dry_run: bool = False
    notes: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        """0: every arm asked for was made; 1: some arm could not be made (its reason says why)."""
        return int(ExitCode.OK if all(a.made for a in self.arms) else ExitCode.INCOMPATIBLE)

    def manifest_dict(self) -> dict[str, Json]:
        """The manifest ``plancheck compare --manifest`` reads."""
        from plancheck import __version__

        return {
            "plancheck_ablation": 1,
            "plancheck_version": __version__,
            "source": self.source,
            "target": self.target,
            "dataset": self.dataset,
            "configuration": self.configuration,
            "folds": list(self.folds),
            "baseline": "baseline",
            "arms": [a.to_dict() for a in self.arms],
        }

    def to_dict(self) -> dict[str, Json]:
        return {**self.manifest_dict(), "manifest": self.manifest, "script": self.script,
                "written": list(self.written), "dry_run": self.dry_run, "notes": list(self.notes),
                "exit_code": self.exit_code}
