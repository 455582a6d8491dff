"""``transfer --schedule``: the target's own plans under a new identifier, carrying the fine-tuning entry.

Everything nnU-Net reads is the target's: every configuration (its ``data_identifier`` too, so
``nnUNetv2_train -p NEW`` reuses the preprocessed data), the fingerprint-derived fields, the
label handling. Only ``plans_name`` changes, and the top-level :data:`~plancheck.finetune.schedule.PLANS_KEY`
entry is added, which nnU-Net ignores and the fine-tuning trainers read. The file is written
next to the target's plans (``<identifier>.json``, so ``-p <identifier>`` finds it), atomically,
and read back before it takes its name: the same configurations, an entry that parses, and keys
the target network has.

Nothing here imports torch.
"""

from __future__ import annotations

import copy
import json
import os
import typing as t

from plancheck.errors import InputError, OutputExists, ReadBackError, UsageError
from plancheck.finetune.schedule import FREEZE_CHOICES, PLANS_KEY, FinetunePlan

__all__ = ["finetune_plans", "from_check", "from_transfer", "plans_path", "write_finetune_plans"]

Json = t.Any


def finetune_plans(plans: dict[str, Json], plan: FinetunePlan, plans_name: str) -> dict[str, Json]:
    """A copy of ``plans`` named ``plans_name`` with ``plan`` under PLANS_KEY; nothing else changes."""
    new = copy.deepcopy(plans)
    new["plans_name"] = plans_name
    new[PLANS_KEY] = plan.to_dict()
    return new


def plans_path(target_plans_path: str | None, plans_name: str) -> str:
    if target_plans_path is None:
        raise UsageError("`schedule` needs the target's plans file: its folder is where nnU-Net's -p looks")
    if not plans_name or os.sep in plans_name or plans_name.startswith(".") or (os.altsep and os.altsep in plans_name):
        raise UsageError(f"`schedule_plans` {plans_name!r}: a plans identifier, not a path")
    return os.path.join(os.path.dirname(os.path.abspath(target_plans_path)), f"{plans_name}.json")


def write_finetune_plans(path: str, new: dict[str, Json], original: dict[str, Json], network_keys: t.Collection[str],
                         *, force: bool) -> str:
    """Write ``new`` to ``path`` (atomic; an existing file only with ``force``), read back and checked."""
    from plancheck.atomic import atomic_write_text

    def check(tmp: str) -> None:
        try:
            with open(tmp, encoding="utf-8") as fh:
                back = json.load(fh)
            plan = FinetunePlan.from_dict(back.get(PLANS_KEY))
        except (OSError, ValueError) as e:
            raise ReadBackError(f"the fine-tuning plans read back are not valid: {e}", path=path) from e
        problem = None
        if back.get("configurations") != original.get("configurations"):
            problem = "the configurations differ from the target's"
        elif {k: v for k, v in back.items() if k not in (PLANS_KEY, "plans_name")} != \
                {k: v for k, v in original.items() if k not in (PLANS_KEY, "plans_name")}:
            problem = "fields other than plans_name and the fine-tuning entry differ from the target's"
        elif not set(plan.carried) <= set(network_keys):
            problem = "the entry names keys the target network does not have"
        if problem:
            raise ReadBackError(f"the fine-tuning plans read back: {problem}", path=path)

    text = json.dumps(new, indent=4)  # as nnU-Net's save_json writes plans
    try:
        return atomic_write_text(path, text, overwrite=force, check=check)
    except FileExistsError:
        raise OutputExists("exists; not overwritten (pass `force` to replace it, or choose another "
                           "`schedule_plans`)", path=path) from None
    except OSError as e:
        raise InputError(f"cannot write the fine-tuning plans: {e.strerror or e}", path=path) from e


def from_transfer(plan: t.Any, freeze: str, carried_lr_ratio: float, source: str) -> FinetunePlan:
    """The fine-tuning entry of a transfer plan (:class:`~plancheck.remedies.transfer_plan.TransferPlan`).

    ``carried``: every key (aliases included) of every tensor the transfer copied or adapted.
    ``frozen``: all of them (``carried``), or those of the stem and encoder (``encoder``: the parts
    the target architecture's own ``key_to_stem``/``key_to_encoder`` name).
    """
    from plancheck.remedies.transfer_plan import Part

    freeze = freeze_choice(freeze)
    lr_ratio(carried_lr_ratio)
    rows = [r for r in plan.tensors if r.carried]
    frozen_rows = rows if freeze == "carried" else [r for r in rows if r.part in (Part.STEM, Part.ENCODER)]
    if not frozen_rows:
        raise InputError(f"`schedule` {freeze}: nothing to freeze, the transfer carried no "
                         f"{'tensor' if freeze == 'carried' else 'stem or encoder tensor'} over")
    carried = tuple(k for r in rows for k in r.keys)
    frozen = tuple(k for r in frozen_rows for k in r.keys)
    return FinetunePlan(freeze=freeze, carried=carried, frozen=frozen, carried_lr_ratio=float(carried_lr_ratio),
                        source=source)


def from_check(report: t.Any, encoder: str | None, stem: str | None, freeze: str, carried_lr_ratio: float,
               source: str) -> FinetunePlan:
    """The fine-tuning entry of a passing check (``check --fix --schedule``): what nnU-Net's own loader loads.

    ``carried``: every key (aliases included) of every tensor ``-pretrained_weights`` loads (status ``ok``; the
    segmentation heads nnU-Net skips are not carried). ``frozen``: all of them (``carried``), or those under
    the target architecture's ``key_to_encoder`` / ``key_to_stem`` modules (``encoder``).
    """
    from plancheck.records.report import Status

    freeze = freeze_choice(freeze)
    lr_ratio(carried_lr_ratio)
    if not report.compatible:
        raise InputError("`schedule`: the weights do not load into this network, so nothing is carried over")
    rows = [r for r in report.tensors if r.status is Status.OK and r.target_shape is not None]
    if freeze == "carried":
        frozen_rows = rows
    else:
        if not encoder and not stem:
            raise InputError(f"`schedule` encoder: the target architecture ({report.target.network_class}) declares "
                             "no encoder or stem (key_to_encoder, key_to_stem); freeze what was carried instead")
        modules = tuple(m + "." for m in (encoder, stem) if m)
        frozen_rows = [r for r in rows if any(k.startswith(modules) for k in r.keys)]
    if not frozen_rows:
        raise InputError(f"`schedule` {freeze}: nothing to freeze, no "
                         f"{'tensor' if freeze == 'carried' else 'stem or encoder tensor'} is loaded")
    return FinetunePlan(freeze=freeze, carried=tuple(k for r in rows for k in r.keys),
                        frozen=tuple(k for r in frozen_rows for k in r.keys),
                        carried_lr_ratio=float(carried_lr_ratio), source=source)


def lr_ratio(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UsageError(f"`carried_lr_ratio` {value!r}: a positive number (1: the same learning rate)")
    return float(value)


def freeze_choice(value: str) -> str:
    if value not in FREEZE_CHOICES:
        raise UsageError(f"`schedule` {value!r}: one of {', '.join(FREEZE_CHOICES)}")
    return value
