"""Alias keys of one tensor that hold different values in a checkpoint: which one nnU-Net loads.

dynamic_network_architectures registers each convolution twice (``convs.0.conv.weight`` and
``convs.0.all_modules.0.weight``) and the encoder twice (``encoder.*``, ``decoder.encoder.*``):
one parameter, several state_dict keys. A checkpoint nnU-Net wrote stores one storage for
all of them. A user who edits a checkpoint by key (adapting a stem, say) changes one name;
nnU-Net's ``load_state_dict`` then copies every key into the shared parameter in state_dict
order, so the **last** key of the group wins and an edit of an earlier one is silently lost.

Only groups whose keys agree in shape and differ in storage (or offset, stride, dtype) are
compared, by value, with the safe data reader: a file nnU-Net wrote costs nothing here.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from plancheck.inputs.shapes import ShapeTable

if t.TYPE_CHECKING:
    from plancheck.inputs.checkpoint import Checkpoint

__all__ = ["AliasConflict", "alias_conflicts"]


@dataclass(frozen=True, slots=True)
class AliasConflict:
    """One network tensor whose checkpoint keys disagree."""

    keys: tuple[str, ...]  #: the (unprefixed) checkpoint keys naming it, in nnU-Net's load order
    kept: str  #: the key whose value nnU-Net's load_state_dict leaves in the network: the last
    differing: tuple[str, ...]  #: the keys whose values differ from ``kept``'s (lost on load)

    def message(self) -> str:
        lost = ", ".join(self.differing)
        return (f"checkpoint keys {lost} and {self.kept} name one tensor of the network but hold different "
                f"values: nnU-Net's load_state_dict copies them in order and keeps the later key, {self.kept} "
                f"(the value of {lost} is lost); plancheck's transfer and verify use {self.kept}'s value")

    def to_dict(self) -> dict[str, t.Any]:
        return {"keys": list(self.keys), "kept": self.kept, "differing": list(self.differing)}


def alias_conflicts(ckpt: Checkpoint, network: ShapeTable, raw_keys: t.Mapping[str, str]) -> tuple[AliasConflict, ...]:
    """The alias groups of ``network`` (keys in state_dict order) whose checkpoint values disagree.

    ``raw_keys`` maps each unprefixed key to the key as stored in ``ckpt``.
    """
    candidates: list[tuple[str, ...]] = []
    for group in network.groups:
        present = tuple(k for k in group if k in raw_keys)
        if len(present) < 2:
            continue
        records = [ckpt.state_dict[raw_keys[k]] for k in present]
        if len({r.shape for r in records}) != 1:
            continue  # a shape mismatch: the check reports it as such
        if len({(r.storage_key, r.storage_offset, r.stride, r.dtype) for r in records}) == 1:
            continue  # one stored tensor under several names, as nnU-Net writes it
        candidates.append(present)
    if not candidates:
        return ()
    import torch

    from plancheck.inputs.checkpoint.data import read_tensors

    values = read_tensors(ckpt, [raw_keys[k] for group in candidates for k in group])
    out = []
    for group in candidates:
        kept = group[-1]
        reference = values[raw_keys[kept]]
        differing = tuple(k for k in group[:-1]
                          if values[raw_keys[k]].dtype != reference.dtype
                          or not torch.equal(values[raw_keys[k]], reference))
        if differing:
            out.append(AliasConflict(keys=group, kept=kept, differing=differing))
    return tuple(out)
