"""Warnings of a check whose weights load: preprocessing that differs, channels that differ by position, and
what nnU-Net's loader does with the file itself."""

from __future__ import annotations

import typing as t

from plancheck.records.report import ChannelPair

if t.TYPE_CHECKING:
    from plancheck.inputs.checkpoint import Checkpoint
    from plancheck.inputs.sources import SourceInput
    from plancheck.network.spec import Side

__all__ = ["channel_pairs", "channel_warning", "checkpoint_notes", "loader_warnings", "preprocessing_warnings"]


def preprocessing_warnings(source: Side, target: Side) -> list[str]:
    """What differs in preprocessing: the weights load, but the inputs look different."""
    from plancheck.compare.plansdiff import diff, preprocessing_warnings as warnings_of

    result = diff(
        source.plans,
        target.plans,
        configurations=(source.configuration.name,),
        target_configuration=target.configuration.name,
        dataset_json_a=source.dataset_json,
        dataset_json_b=target.dataset_json,
    )
    schemes = (source.configuration.data.get("normalization_schemes"),
               target.configuration.data.get("normalization_schemes"))
    return list(warnings_of(result, names=("source", "target"), schemes=schemes))


def _channel_names(side: Side) -> dict[int, str] | None:
    """Position -> name from the side's dataset.json (``channel_names`` or the old ``modality``); None without one."""
    if side.dataset_json is None:
        return None
    names = side.dataset_json.data.get(side.dataset_json.channel_key)
    if not isinstance(names, dict):
        return None
    out = {}
    for key, name in names.items():
        try:
            out[int(key)] = str(name)
        except (TypeError, ValueError):
            continue
    return out


def channel_pairs(source: Side, target: Side) -> tuple[ChannelPair, ...]:
    """The image input channels of both sides by position: names (dataset.json) and schemes (plans)."""
    names = (_channel_names(source), _channel_names(target))
    declared = [side.configuration.data.get("normalization_schemes") for side in (source, target)]
    schemes: list[list[t.Any]] = [list(s) if isinstance(s, list) else [] for s in declared]
    count = max([len(s) for s in schemes] + [max(n, default=-1) + 1 for n in names if n is not None])
    return tuple(
        ChannelPair(
            position=i,
            source_name=None if names[0] is None else names[0].get(i),
            target_name=None if names[1] is None else names[1].get(i),
            source_scheme=str(schemes[0][i]) if i < len(schemes[0]) else None,
            target_scheme=str(schemes[1][i]) if i < len(schemes[1]) else None,
        )
        for i in range(count)
    )


def channel_warning(channels: t.Sequence[ChannelPair]) -> str | None:
    """One sentence when both dataset.json files name a position differently (or its scheme differs)."""
    differing = [c for c in channels if c.differs]
    if not differing:
        return None
    shown = "; ".join(
        f"channel {c.position}: {c.source_name} ({c.source_scheme or 'scheme unknown'}) in source, "
        f"{c.target_name} ({c.target_scheme or 'scheme unknown'}) in target"
        for c in differing
    )
    return (
        f"input channels differ by position ({shown}): the weights load, but the first layer's filters learnt "
        "for the source's channel then see another image; order the target's channels (dataset.json "
        "channel_names and the _000X file suffixes) as the source's, or fine-tune knowing they differ"
    )


def loader_warnings(src_in: SourceInput) -> list[str]:
    """What nnU-Net's loader does with the file itself, before it compares any key."""
    ckpt = src_in.checkpoint
    assert ckpt is not None
    if ckpt.format == "safetensors":
        return [
            "nnU-Net's load_pretrained_weights reads the file with torch.load, which cannot read safetensors: "
            "save the tensors with torch.save({'network_weights': state_dict}, path) first (checked here as if so)"
        ]
    if ckpt.container_key != "network_weights":
        where = "a bare state_dict" if ckpt.container_key is None else f"a state_dict under '{ckpt.container_key}'"
        return [
            f"the file holds {where}: nnU-Net's load_pretrained_weights reads checkpoint['network_weights'] and "
            "would stop with a KeyError; re-save it as {'network_weights': state_dict} (checked here as if so)"
        ]
    return []


def checkpoint_notes(ckpt: Checkpoint) -> list[str]:
    notes = []
    devices = sorted({rec.location for rec in ckpt.state_dict.values() if not rec.location.startswith(("cpu", "meta"))})
    if devices:
        notes.append(
            f"tensors were saved on {', '.join(devices)}: load_pretrained_weights calls torch.load without "
            "map_location, so the fine-tuning machine needs that device"
        )
    if ckpt.format == "torch-trusted":
        notes.append("read with torch.load(weights_only=False) (--trust-checkpoint): code in the file could run")
    return notes

