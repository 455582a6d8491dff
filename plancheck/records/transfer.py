"""What ``plancheck transfer`` returns: the plan it carried out, the file it wrote, and the command to run."""

from __future__ import annotations

import dataclasses
import typing as t

from plancheck.errors import ExitCode
from plancheck.records.base import Rendered

if t.TYPE_CHECKING:
    from plancheck.records.report import Report, SideSummary
    from plancheck.finetune.schedule import FinetunePlan
    from plancheck.remedies.transfer_plan import ChannelMap, TransferPlan

__all__ = ['TransferResult']

Json = t.Any


@dataclasses.dataclass(frozen=True)
class TransferResult(Rendered):
    """What a transfer did (or, for a dry run, would do); every renderer reads this."""

    source: SideSummary
    target: SideSummary
    plan: TransferPlan
    out: str | None
    written: bool
    dry_run: bool
    verified: bool
    seed: int
    channel_map: ChannelMap | None
    command: str
    source_sha256: str | None
    check: Report  #: the plain check of the pair (what nnU-Net's loader says without the transfer)
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    bytes_read: int = 0  #: tensor bytes read from the source
    finetune: FinetunePlan | None = None  #: --schedule: what the fine-tuning plans carry
    finetune_plans: str | None = None  #: --schedule: the plans file written (None: dry run)
    finetune_trainer: str | None = None  #: --schedule: the trainer the command names

    @property
    def exit_code(self) -> int:
        return int(ExitCode.INCOMPATIBLE if self.plan.parameters_carried == 0 else ExitCode.OK)

    def to_dict(self) -> dict[str, Json]:
        from plancheck import __version__

        return {
            "schema_version": 1,
            "plancheck_version": __version__,
            "out": self.out,
            "written": self.written,
            "dry_run": self.dry_run,
            "verified": self.verified,
            "seed": self.seed,
            "channel_map": None if self.channel_map is None else list(self.channel_map),
            "source": {**self.source.to_dict(), "sha256": self.source_sha256},
            "target": self.target.to_dict(),
            "transfer": self.plan.to_dict(),
            "tensors": [r.to_dict() for r in self.plan.tensors],
            "command": self.command,
            "check_compatible": self.check.compatible,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            **({} if self.finetune is None else {"schedule": {
                "freeze": self.finetune.freeze, "carried_lr_ratio": self.finetune.carried_lr_ratio,
                "trainer": self.finetune_trainer, "plans": self.finetune_plans,
                "carried_keys": len(self.finetune.carried), "frozen_keys": list(self.finetune.frozen)}}),
        }
