"""Transfer planning: which source tensor feeds which target tensor, and by what rule. Pure: tables in, actions out.

Both sides come in as a :class:`Layout`: a shape table (for the source, the checkpoint's
actual tensors) plus what the architecture itself declares -- where its encoder and stem
are (``key_to_encoder``, ``key_to_stem``, ``keys_to_in_proj`` of dynamic_network_architectures'
networks), which module lists are indexed by resolution level from the bottleneck (the
decoder's ``stages``, ``transpconvs``, ``seg_layers``), and which keys are weights of
convolutions and transposed convolutions. A checkpoint of another kind (an nnssl
pretraining checkpoint declaring its own encoder and stem) plugs in by building its own
Layout. Nothing here imports torch; the tensor work (:mod:`plancheck.remedies.adapt`) executes the
:class:`Step` s this module decides.

Strategies:

* ``exact``: a target tensor is copied when the source has the same key with the same shape.
* ``encoder``: what nnU-Net master's PretrainedTrainer loads: ``exact``, for the stem and
  encoder only, plus its one shape rule, the stem's input projection (``keys_to_in_proj``)
  repeated over the target's input channels and divided by their number (1 -> N); the
  decoder starts fresh. Where master's strict ``load_state_dict`` of the encoder and stem
  would fail (a tensor missing or of another shape, a source tensor left over), a note says
  so and what is written instead (the tensors that fit; the rest initialised).
* ``adapt``: ``exact``, plus stages aligned by resolution level when the depth differs
  (target ``decoder.stages[j]`` <- source ``decoder.stages[j + S - T]``), plus the honest
  shape rules: kernel 3 -> 1 (average) and 1 -> 3 (centre), transposed-convolution stride
  2 -> 1 (average the taps) and 1 -> 2 (repeat the tap), input channels 1 -> N (repeat,
  divide by N) or a ``--channel-map``. Widths never map.

The segmentation head (``.seg_layers.``) is always left to nnU-Net's initialisation, as
nnU-Net's loader re-initialises it anyway.
"""

from __future__ import annotations

import enum
import typing as t
from dataclasses import dataclass, field

from plancheck.errors import UsageError
from plancheck.options import TransferStrategy as Strategy
from plancheck.inputs.shapes import Shape, ShapeTable, is_head, numel

__all__ = [
    "Action",
    "ChannelMap",
    "Layout",
    "Part",
    "PartShare",
    "Step",
    "Strategy",
    "TensorPlan",
    "TransferPlan",
    "parse_channel_map",
    "plan_transfer",
]


class Action(str, enum.Enum):
    COPIED = "copied"
    ADAPTED = "adapted"
    INITIALISED = "initialised"
    HEAD = "head"

    def __str__(self) -> str:
        return self.value


class Part(str, enum.Enum):
    STEM = "stem"
    ENCODER = "encoder"
    DECODER = "decoder"
    HEAD = "head"

    def __str__(self) -> str:
        return self.value


#: One entry of a channel map: a source channel index, "mean" (of all source channels) or "new".
ChannelEntry = t.Union[int, str]
ChannelMap = tuple[ChannelEntry, ...]


def parse_channel_map(text: str | t.Sequence[ChannelEntry] | None) -> ChannelMap | None:
    """``"0,new"`` -> ``(0, "new")``; each entry a source channel index, ``mean`` or ``new``."""
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[ChannelEntry] = []
    for raw in items:
        item = raw.strip().lower() if isinstance(raw, str) else raw
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            out.append(item)
        elif isinstance(item, str) and item.isdigit():
            out.append(int(item))
        elif item in ("mean", "new"):
            out.append(t.cast(str, item))
        else:
            raise UsageError(f"`channel_map`: {raw!r} is not a source channel index, 'mean' or 'new'"
                             " (one entry per target input channel, e.g. 0,new)")
    if not out:
        raise UsageError("`channel_map` is empty: give one entry per target input channel, e.g. 0,new")
    return tuple(out)


@dataclass(frozen=True)
class Layout:
    """One network as the planner sees it: its tensors and its architecture's own declarations."""

    table: ShapeTable
    #: module paths (``key_to_encoder``, ``key_to_stem``, ``keys_to_in_proj``); None/() when undeclared
    encoder: str | None = None
    stem: str | None = None
    in_proj: tuple[str, ...] = ()
    #: module lists indexed by resolution level counted from the full resolution (the encoder's stages)
    levels_from_top: tuple[str, ...] = ()
    #: module lists indexed by resolution level counted from the bottleneck (the decoder's lists)
    levels_from_bottom: tuple[str, ...] = ()
    n_stages: int | None = None
    #: state_dict key -> "conv" | "transpconv" for weights of (transposed) convolutions
    kinds: t.Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One shape rule, applied in order to the source tensor. ``axis`` counts the tensor's dimensions."""

    rule: str  #: kernel-average | kernel-centre | stride-average | stride-repeat | channels-repeat | channel-map
    axis: int
    source: int
    target: int
    channel_map: ChannelMap | None = None

    def describe(self) -> str:
        if self.rule == "channel-map":
            return "channel-map(" + ",".join(str(c) for c in (self.channel_map or ())) + ")"
        if self.rule == "channels-repeat":
            return f"channels-repeat({self.source}->{self.target}, /{self.target})"
        return f"{self.rule}(axis {self.axis - 2}: {self.source}->{self.target})"


@dataclass(frozen=True)
class TensorPlan:
    """What happens to one target tensor (all its alias keys)."""

    keys: tuple[str, ...]  #: every target state_dict key naming this tensor
    part: Part
    action: Action
    target_shape: Shape
    source_key: str | None = None  #: the source tensor it comes from (copied / adapted)
    source_shape: Shape | None = None
    steps: tuple[Step, ...] = ()
    reason: str = ""  #: why initialised, or how the source key was found

    @property
    def key(self) -> str:
        return self.keys[0]

    @property
    def parameters(self) -> int:
        return numel(self.target_shape)

    @property
    def carried(self) -> bool:
        return self.action in (Action.COPIED, Action.ADAPTED)

    @property
    def label(self) -> str:
        """``copied``, ``adapted:<rule>+<rule>``, ``initialised:<reason>`` or ``head``."""
        if self.action is Action.ADAPTED:
            return "adapted:" + "+".join(s.describe() for s in self.steps)
        if self.action is Action.INITIALISED:
            return f"initialised:{self.reason}"
        return str(self.action)

    def to_dict(self) -> dict[str, t.Any]:
        return {
            "key": self.key,
            "keys": list(self.keys),
            "part": str(self.part),
            "action": str(self.action),
            "label": self.label,
            "rules": [s.describe() for s in self.steps],
            "reason": self.reason or None,
            "source_key": self.source_key,
            "source_shape": None if self.source_shape is None else list(self.source_shape),
            "target_shape": list(self.target_shape),
            "parameters": self.parameters,
        }


@dataclass(frozen=True)
class PartShare:
    part: Part
    parameters_total: int
    parameters_carried: int
    tensors_total: int
    tensors_copied: int
    tensors_adapted: int

    @property
    def share(self) -> float:
        return self.parameters_carried / self.parameters_total if self.parameters_total else 0.0

    def to_dict(self) -> dict[str, t.Any]:
        return {
            "part": str(self.part),
            "parameters_total": self.parameters_total,
            "parameters_carried": self.parameters_carried,
            "share": self.share,
            "tensors_total": self.tensors_total,
            "tensors_copied": self.tensors_copied,
            "tensors_adapted": self.tensors_adapted,
        }


@dataclass(frozen=True)
class TransferPlan:
    strategy: Strategy
    tensors: tuple[TensorPlan, ...]
    notes: tuple[str, ...] = ()
    refused: str | None = None  #: why nothing can be carried at all (2D weights for 3D, ...)

    @property
    def parts(self) -> tuple[PartShare, ...]:
        out = []
        for part in Part:
            rows = [r for r in self.tensors if r.part is part]
            if not rows:
                continue
            out.append(PartShare(
                part=part,
                parameters_total=sum(r.parameters for r in rows),
                parameters_carried=sum(r.parameters for r in rows if r.carried),
                tensors_total=len(rows),
                tensors_copied=sum(1 for r in rows if r.action is Action.COPIED),
                tensors_adapted=sum(1 for r in rows if r.action is Action.ADAPTED),
            ))
        return tuple(out)

    @property
    def parameters_total(self) -> int:
        """Parameters outside the head (the head is never carried)."""
        return sum(r.parameters for r in self.tensors if r.part is not Part.HEAD)

    @property
    def parameters_carried(self) -> int:
        return sum(r.parameters for r in self.tensors if r.carried)

    @property
    def share(self) -> float:
        return self.parameters_carried / self.parameters_total if self.parameters_total else 0.0

    @property
    def carried(self) -> tuple[TensorPlan, ...]:
        return tuple(r for r in self.tensors if r.carried)

    def counts(self) -> dict[str, int]:
        return {str(a): sum(1 for r in self.tensors if r.action is a) for a in Action}

    def to_dict(self) -> dict[str, t.Any]:
        return {
            "strategy": str(self.strategy),
            "refused": self.refused,
            "parameters_total": self.parameters_total,
            "parameters_carried": self.parameters_carried,
            "share": self.share,
            "counts": self.counts(),
            "parts": [p.to_dict() for p in self.parts],
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- planning


def _under(key: str, module: str | None) -> bool:
    return bool(module) and key.startswith(module + ".")  # type: ignore[operator]


def part_of(keys: t.Sequence[str], layout: Layout) -> Part:
    """The part a tensor belongs to, by the architecture's declarations (any alias key decides)."""
    if any(is_head(k) for k in keys):
        return Part.HEAD
    if any(_under(k, layout.stem) for k in keys):
        return Part.STEM
    if any(_under(k, layout.encoder) for k in keys):
        return Part.ENCODER
    return Part.DECODER


def _level_key(key: str, lists: t.Sequence[str]) -> tuple[str, int, str] | None:
    """``(list, index, rest)`` for a key inside one of the level-indexed module lists."""
    for prefix in lists:
        if key.startswith(prefix + "."):
            index, _, rest = key[len(prefix) + 1:].partition(".")
            if index.isdigit():
                return prefix, int(index), rest
    return None


def aligned_key(key: str, source: Layout, target: Layout) -> str | None:
    """The source key that serves the same resolution level as target ``key`` (None: no such level).

    Encoder stages count from the full resolution on both sides (same index); decoder lists
    count from the bottleneck: target index ``j`` is source index ``j + S - T``.
    """
    hit = _level_key(key, target.levels_from_bottom)
    if hit is not None and source.n_stages and target.n_stages:
        prefix, j, rest = hit
        i = j + source.n_stages - target.n_stages
        if i < 0 or i >= source.n_stages - 1:
            return None
        return f"{prefix}.{i}.{rest}" if rest else f"{prefix}.{i}"
    return key


def _in_proj(keys: t.Sequence[str], layout: Layout) -> bool:
    return any(k.rsplit(".", 1)[0] in layout.in_proj and k.endswith(".weight") for k in keys)


def _spatial_steps(kind: str, s: Shape, tshape: Shape) -> tuple[list[Step], str | None]:
    steps: list[Step] = []
    for axis in range(2, len(tshape)):
        a, b = s[axis], tshape[axis]
        if a == b:
            continue
        if kind == "conv" and (a, b) == (3, 1):
            steps.append(Step("kernel-average", axis, a, b))
        elif kind == "conv" and (a, b) == (1, 3):
            steps.append(Step("kernel-centre", axis, a, b))
        elif kind == "transpconv" and (a, b) == (2, 1):
            steps.append(Step("stride-average", axis, a, b))
        elif kind == "transpconv" and (a, b) == (1, 2):
            steps.append(Step("stride-repeat", axis, a, b))
        else:
            what = "kernel" if kind == "conv" else "stride"
            return [], f"{what} {a}->{b} on axis {axis - 2}: no honest mapping"
    return steps, None


def _adapt(keys: t.Sequence[str], s: Shape, tshape: Shape, source: Layout, target: Layout,
           channel_map: ChannelMap | None) -> tuple[list[Step], str | None]:
    """The steps that turn a source tensor of shape ``s`` into one of ``tshape``; or why there are none."""
    if len(s) != len(tshape):
        return [], f"dimensions differ ({len(s)}-d vs {len(tshape)}-d)"
    kind = next((target.kinds[k] for k in keys if k in target.kinds), None)
    if kind is None:
        return [], f"widths differ ({_fmt(s)} vs {_fmt(tshape)}): no honest mapping"
    out_axis, in_axis = (0, 1) if kind == "conv" else (1, 0)
    if s[out_axis] != tshape[out_axis]:
        return [], f"widths differ ({_fmt(s)} vs {_fmt(tshape)}): no honest mapping"
    steps: list[Step] = []
    in_proj = kind == "conv" and _in_proj(keys, target)
    if in_proj and channel_map is not None:
        if len(channel_map) != tshape[in_axis]:
            raise UsageError(f"`channel_map` has {len(channel_map)} entries; the target has {tshape[in_axis]}"
                             " input channels")
        bad = [c for c in channel_map if isinstance(c, int) and c >= s[in_axis]]
        if bad:
            raise UsageError(f"`channel_map` names source channel {bad[0]}; the source has {s[in_axis]}")
        steps.append(Step("channel-map", in_axis, s[in_axis], tshape[in_axis], channel_map))
    elif s[in_axis] != tshape[in_axis]:
        if not in_proj:
            return [], f"widths differ ({_fmt(s)} vs {_fmt(tshape)}): no honest mapping"
        if s[in_axis] != 1:
            example = ",".join(["0"] * tshape[in_axis])
            return [], (f"input channels {s[in_axis]}->{tshape[in_axis]}: pass --channel-map (one entry per target "
                        f"channel: a source channel, mean or new; e.g. {example})")
        steps.append(Step("channels-repeat", in_axis, s[in_axis], tshape[in_axis]))
    spatial, why = _spatial_steps(kind, s, tshape)
    if why is not None:
        return [], why
    return steps + spatial, None


def _fmt(shape: Shape | None) -> str:
    return "—" if shape is None else "[" + ", ".join(str(x) for x in shape) + "]"


def _dimension(layout: Layout) -> int | None:
    """Spatial dimensions of the convolutions (from the first declared-kind weight in the table)."""
    for key, kind in layout.kinds.items():
        if kind == "conv" and key in layout.table.shapes:
            return len(layout.table.shapes[key]) - 2
    return None


def plan_transfer(
    source: Layout,
    target: Layout,
    strategy: Strategy | str = Strategy.ADAPT,
    *,
    channel_map: ChannelMap | None = None,
) -> TransferPlan:
    """One :class:`TensorPlan` per target tensor, in the target's state_dict order."""
    strategy = Strategy(strategy)
    notes: list[str] = []
    src_shapes = source.table.shapes
    refused = None
    src_dim, tgt_dim = _source_dimension(source, target), _dimension(target)
    if src_dim is not None and tgt_dim is not None and src_dim != tgt_dim:
        refused = (f"{src_dim}D weights for a {tgt_dim}D network: no tensor carries over honestly (norms and biases"
                   " would fit by shape, but they belong to other convolutions)")
    if strategy is Strategy.ENCODER and not (target.encoder or target.stem):
        refused = "the target architecture declares no encoder or stem (key_to_encoder, key_to_stem)"
    if channel_map is not None and strategy is not Strategy.ADAPT:
        raise UsageError("`channel_map` needs `strategy` adapt")
    rows: list[TensorPlan] = []
    for group in target.table.groups:
        tshape = target.table.shapes[group[0]]
        part = part_of(group, target)
        common = dict(keys=group, part=part, target_shape=tshape)
        if part is Part.HEAD:
            rows.append(TensorPlan(action=Action.HEAD, reason="segmentation head: nnU-Net re-initialises it",
                                   **common))
            continue
        if refused is not None:
            rows.append(TensorPlan(action=Action.INITIALISED, reason="refused", **common))
            continue
        if strategy is Strategy.ENCODER and part is Part.DECODER:
            rows.append(TensorPlan(action=Action.INITIALISED, reason="decoder starts fresh (--strategy encoder)",
                                   **common))
            continue
        if strategy is Strategy.ADAPT:
            candidates = [(aligned_key(k, source, target), k) for k in group]
        else:
            candidates = [(k, k) for k in group]
        found = next(((sk, k) for sk, k in candidates if sk is not None and sk in src_shapes), None)
        if found is None:
            no_level = (strategy is Strategy.ADAPT and all(sk is None for sk, _ in candidates)) \
                or _beyond_source_depth(group, source, target)
            reason = "no source stage at this resolution level" if no_level else "not in the source"
            rows.append(TensorPlan(action=Action.INITIALISED, reason=reason, **common))
            continue
        skey, tkey = found
        sshape = src_shapes[skey]
        how = "" if skey == tkey else f"aligned by resolution level from {skey}"
        common.update(source_key=skey, source_shape=sshape)
        if sshape == tshape and not (channel_map is not None and _in_proj(group, target)):
            rows.append(TensorPlan(action=Action.COPIED, reason=how, **common))
            continue
        repeat = _master_in_proj(group, sshape, tshape, target) if strategy is Strategy.ENCODER else None
        if repeat is not None:
            rows.append(TensorPlan(action=Action.ADAPTED, steps=(repeat,), reason=how, **common))
            continue
        if strategy is not Strategy.ADAPT:
            rows.append(TensorPlan(action=Action.INITIALISED,
                                   reason=f"shape differs ({_fmt(sshape)} vs {_fmt(tshape)})", **common))
            continue
        steps, why = _adapt(group, sshape, tshape, source, target, channel_map)
        if why is not None:
            rows.append(TensorPlan(action=Action.INITIALISED, reason=why, **common))
        else:
            rows.append(TensorPlan(action=Action.ADAPTED, steps=tuple(steps), reason=how, **common))
    if refused is not None:
        notes.append(refused)
    elif strategy is Strategy.ENCODER:
        notes.extend(_encoder_notes(rows, source))
    if source.n_stages and target.n_stages and source.n_stages != target.n_stages:
        if strategy is Strategy.ADAPT:
            shift = source.n_stages - target.n_stages
            notes.append(f"depth differs ({source.n_stages} stages vs {target.n_stages}): decoder stages aligned by "
                         f"resolution level (target decoder stage j <- source stage j {'+' if shift > 0 else '-'} "
                         f"{abs(shift)})")
        else:
            notes.append(f"depth differs ({source.n_stages} stages vs {target.n_stages}): keys are matched by name; "
                         "--strategy adapt aligns decoder stages by resolution level")
    return TransferPlan(strategy=strategy, tensors=tuple(rows), notes=tuple(notes), refused=refused)


def _master_in_proj(keys: t.Sequence[str], s: Shape, tshape: Shape, target: Layout) -> Step | None:
    """Master's PretrainedTrainer rule for the stem's input projection: 1 input channel -> N, repeated, / N."""
    if not _in_proj(keys, target) or target.kinds.get(keys[0], "conv") != "conv" or len(s) != len(tshape):
        return None
    if len(s) < 3 or s[1] != 1 or tshape[1] <= 1 or s[0] != tshape[0] or s[2:] != tshape[2:]:
        return None
    return Step("channels-repeat", 1, 1, tshape[1])


def _encoder_notes(rows: t.Sequence[TensorPlan], source: Layout) -> list[str]:
    """What ``--strategy encoder`` did beyond copying, and where master's strict load would refuse."""
    notes: list[str] = []
    repeated = [r for r in rows if r.action is Action.ADAPTED]
    if repeated:
        n = repeated[0].target_shape[1]
        notes.append(f"stem input projection ({', '.join(r.key for r in repeated)}) repeated over {n} input "
                     f"channels and divided by {n}, as nnU-Net master's PretrainedTrainer does")
    mine = [r for r in rows if r.part in (Part.STEM, Part.ENCODER)]
    left = [r for r in mine if not r.carried]
    aliases = source.table.group_index()
    # source tensors some target row already accounts for (carried, or named in a row that does not fit)
    claimed = {k for r in mine for k in (*r.keys, *aliases.get(r.source_key or "", (r.source_key,)))}
    spare = [g[0] for g in source.table.groups
             if any(_under(k, source.encoder) or _under(k, source.stem) for k in g)
             and not any(k in claimed for k in g)]
    if left or spare:
        why = []
        if left:
            why.append(f"{len(left)} target stem/encoder tensor(s) do not fit, e.g. {left[0].key}: {left[0].reason}")
        if spare:
            why.append(f"{len(spare)} source stem/encoder tensor(s) have no place in the target, e.g. {spare[0]}")
        carried = sum(1 for r in mine if r.carried)
        notes.append("nnU-Net master's PretrainedTrainer would refuse these weights (its strict load_state_dict of "
                     f"the encoder and stem fails: {'; '.join(why)}); plancheck writes the {carried} stem/encoder "
                     "tensor(s) that fit and leaves the rest to nnU-Net's initialisation")
    return notes


def _beyond_source_depth(keys: t.Sequence[str], source: Layout, target: Layout) -> bool:
    """An encoder stage deeper than the source's deepest (stages count from the full resolution)."""
    if not source.n_stages:
        return False
    hits = [_level_key(k, target.levels_from_top) for k in keys]
    return any(h is not None and h[1] >= source.n_stages for h in hits)


def _source_dimension(source: Layout, target: Layout) -> int | None:
    """The source weights' dimension: its in-projection weight as stored (the checkpoint decides)."""
    for proj in (*source.in_proj, *target.in_proj):
        shape = source.table.shapes.get(proj + ".weight")
        if shape is not None:
            return len(shape) - 2
    return _dimension(source)
