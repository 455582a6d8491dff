"""Name the plans or dataset.json field behind every tensor that does not load, by intervention.

No table of key names is involved, so this works for architecture classes plancheck has
never seen. For every difference between the two network specs (one element of a
per-stage list, a scalar field, the class, the input channels) the target is rebuilt on
the meta device with that one value taken from the source ("repair"). The failing keys
that then load are explained by that difference. A tensor that two differences break at
once (a conv weight whose kernel size *and* width changed) is repaired by neither alone;
for those the reverse intervention decides: the source rebuilt with the target's value of
one difference ("break") shows every difference that breaks the key on its own.

Parameters that only change together form one group: the stage count changes the length
of every per-stage list, so a depth change is a single intervention ("depth: 6 stages vs 7").
"""

from __future__ import annotations

import copy
import typing as t
from dataclasses import dataclass, replace

from plancheck.network.build import network_shapes
from plancheck.compare.jsondiff import PERMUTATION_NOTE, is_permutation
from plancheck.compare.loading import key_status
from plancheck.errors import InputError
from plancheck.records.report import Cause, RootCause, Status, TensorRow
from plancheck.inputs.shapes import ShapeTable
from plancheck.network.spec import NetworkSpec, Side

__all__ = ["Intervention", "attribute", "interventions"]

Json = t.Any
_ABSENT = object()
_BAD = frozenset({Status.MISMATCH, Status.MISSING, Status.UNUSED})


@dataclass(frozen=True)
class Intervention:
    """One difference between the two specs, and how to move either spec across it."""

    causes: tuple[Cause, ...]
    repair: t.Callable[[NetworkSpec], NetworkSpec]  # target -> target with the source's value
    breaks: t.Callable[[NetworkSpec], NetworkSpec]  # source -> source with the target's value
    note: str = ""

    @property
    def label(self) -> str:
        return ", ".join(c.parameter for c in self.causes)


def _set_kwargs(updates: dict[str, Json], removals: t.Iterable[str] = ()) -> t.Callable[[NetworkSpec], NetworkSpec]:
    def apply(spec: NetworkSpec) -> NetworkSpec:
        kwargs = copy.deepcopy(spec.arch_kwargs)
        kwargs.update(copy.deepcopy(updates))
        for key in removals:
            kwargs.pop(key, None)
        return spec.with_arch_kwargs(kwargs)

    return apply


def _set_element(key: str, index: int, value: Json) -> t.Callable[[NetworkSpec], NetworkSpec]:
    def apply(spec: NetworkSpec) -> NetworkSpec:
        kwargs = copy.deepcopy(spec.arch_kwargs)
        kwargs[key] = list(kwargs[key])
        kwargs[key][index] = copy.deepcopy(value)
        return spec.with_arch_kwargs(kwargs)

    return apply


def _conv_dim(conv_op: Json) -> int | None:
    """1, 2 or 3 for torch's ConvNd class paths; None for anything else."""
    if isinstance(conv_op, str) and conv_op.rsplit(".", 1)[-1] in ("Conv1d", "Conv2d", "Conv3d"):
        return int(conv_op[-2])
    return None


def _per_axis_lengths(value: Json) -> tuple[int, ...] | None:
    """Lengths of a per-stage list of per-axis lists (kernel_sizes, strides), else None."""
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return tuple(len(v) for v in value)
    return None


class _Paths:
    """Render a canonical configuration path as it stands in one side's file."""

    def __init__(self, side: Side) -> None:
        self.side = side

    def __call__(self, canonical: tuple[str | int, ...]) -> str:
        from plancheck.inputs.paths import format_path, locate

        return format_path(locate(self.side.plans, self.side.configuration, canonical))


def interventions(source: Side, target: Side) -> list[Intervention]:
    """Every difference between the source's and the target's network, as an intervention."""
    s, tg = source.spec, target.spec
    path = _Paths(target)
    arch = ("architecture", "arch_kwargs")
    result: list[Intervention] = []
    skw, tkw = s.arch_kwargs, tg.arch_kwargs

    # Depth: the stage count and every per-stage list whose length follows it change together.
    depth_keys: list[str] = []
    if skw.get("n_stages", _ABSENT) != tkw.get("n_stages", _ABSENT):
        depth_keys = ["n_stages"] + [
            k
            for k in sorted(set(skw) & set(tkw))
            if isinstance(skw[k], list) and isinstance(tkw[k], list) and len(skw[k]) != len(tkw[k])
        ]
        updates = {k: skw[k] for k in depth_keys if k in skw}
        back = {k: tkw[k] for k in depth_keys if k in tkw}
        causes = tuple(Cause(path((*arch, k)), skw.get(k), tkw.get(k)) for k in depth_keys)
        result.append(
            Intervention(
                causes=causes,
                repair=_set_kwargs(updates),
                breaks=_set_kwargs(back),
                note=f"depth: {skw.get('n_stages')} stages vs {tkw.get('n_stages')}; "
                "the per-stage lists change with it",
            )
        )

    # Dimension: 2D weights against a 3D network. conv_op, the norm/dropout ops and the
    # per-axis lists (kernel_sizes, strides) change together.
    dim_keys: list[str] = []
    s_dim, t_dim = _conv_dim(skw.get("conv_op")), _conv_dim(tkw.get("conv_op"))
    if s_dim != t_dim and s_dim and t_dim:
        dim_keys = [k for k in ("conv_op", "norm_op", "dropout_op") if skw.get(k) != tkw.get(k)]
        dim_keys += [
            k
            for k in sorted(set(skw) & set(tkw))
            if k not in depth_keys and _per_axis_lengths(skw[k]) != _per_axis_lengths(tkw[k])
        ]
        result.append(
            Intervention(
                causes=tuple(Cause(path((*arch, k)), skw.get(k), tkw.get(k)) for k in dim_keys),
                repair=_set_kwargs({k: skw[k] for k in dim_keys}),
                breaks=_set_kwargs({k: tkw[k] for k in dim_keys}),
                note=f"dimension: {s_dim}D vs {t_dim}D",
            )
        )
    depth_keys += dim_keys

    class_differs = s.class_path != tg.class_path
    only_source = sorted(set(skw) - set(tkw))
    only_target = sorted(set(tkw) - set(skw))
    if class_differs:
        # A class brings its own keyword names (n_conv_per_stage vs n_blocks_per_stage): they move with it.
        cls_causes = [Cause(_class_path(target), s.declared_class_path or s.class_path,
                            tg.declared_class_path or tg.class_path)]
        cls_causes += [Cause(path((*arch, k)), skw.get(k), tkw.get(k)) for k in [*only_source, *only_target]]
        src_class, tgt_class = s.class_path, tg.class_path
        repair_kw = _set_kwargs({k: skw[k] for k in only_source}, only_target)
        break_kw = _set_kwargs({k: tkw[k] for k in only_target}, only_source)
        result.append(
            Intervention(
                causes=tuple(cls_causes),
                repair=lambda spec: replace(repair_kw(spec), class_path=src_class),
                breaks=lambda spec: replace(break_kw(spec), class_path=tgt_class),
                note="network class differs"
                + (" (with its own keyword arguments)" if only_source or only_target else ""),
            )
        )

    for key in sorted(set(skw) | set(tkw)):
        if key in depth_keys or (class_differs and (key in only_source or key in only_target)):
            continue
        a, b = skw.get(key, _ABSENT), tkw.get(key, _ABSENT)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (ai, bi) in enumerate(zip(a, b)):
                if ai == bi:
                    continue
                result.append(
                    Intervention(
                        causes=(Cause(path((*arch, key, i)), ai, bi),),
                        repair=_set_element(key, i, ai),
                        breaks=_set_element(key, i, bi),
                        note=PERMUTATION_NOTE if is_permutation(ai, bi) else "",
                    )
                )
            continue
        av = None if a is _ABSENT else a
        bv = None if b is _ABSENT else b
        result.append(
            Intervention(
                causes=(Cause(path((*arch, key)), av, bv),),
                repair=_set_kwargs({key: a} if a is not _ABSENT else {}, [] if a is not _ABSENT else [key]),
                breaks=_set_kwargs({key: b} if b is not _ABSENT else {}, [] if b is not _ABSENT else [key]),
                note=PERMUTATION_NOTE if is_permutation(a, b) else "",
            )
        )

    if s.trainer != tg.trainer:
        result.append(_trainer_intervention(source, target))
    patch = _patch_size_intervention(source, target)
    if patch is not None:
        result.append(patch)

    if s.input_channels != tg.input_channels:
        n_src, n_tgt = s.input_channels, tg.input_channels
        result.append(
            Intervention(
                causes=_input_channel_causes(source, target),
                repair=lambda spec: replace(spec, input_channels=n_src),
                breaks=lambda spec: replace(spec, input_channels=n_tgt),
                note=f"input channels: {n_src} vs {n_tgt}",
            )
        )
    return result


#: How a spec without a trainer is built (nnUNetTrainer and every trainer that does not override it).
PLANS_BUILD = "get_network_from_plans"


def _trainer_intervention(source: Side, target: Side) -> Intervention:
    """The networks are built by different trainers' ``build_network_architecture`` (--target-trainer)."""
    import json

    from plancheck.network.spec import TrainerContext

    def with_trainer(trainer: str | None, side: Side) -> t.Callable[[NetworkSpec], NetworkSpec]:
        def apply(spec: NetworkSpec) -> NetworkSpec:
            if trainer is None:
                return replace(spec, trainer=None, trainer_context=None)
            context = spec.trainer_context or TrainerContext(
                json.dumps(side.plans.data, sort_keys=True, default=str), side.configuration.name)
            return replace(spec, trainer=trainer, trainer_context=context)

        return apply

    def name(trainer: str | None) -> str:
        return PLANS_BUILD if trainer is None else trainer.rsplit(".", 1)[-1]

    s, tg = source.spec.trainer, target.spec.trainer
    return Intervention(
        causes=(Cause("trainer (build_network_architecture)", name(s), name(tg)),),
        repair=with_trainer(s, target),
        breaks=with_trainer(tg, source),
        note="another trainer builds the network: the same plans give other layers",
    )


def _dimension_cause(
    keys: t.Iterable[str], source_shapes: ShapeTable, target_shapes: ShapeTable, source: Side,
    weights_configuration: str | None,
) -> Intervention | None:
    """2D weights against a 3D network (or the reverse) that no plans difference explains: a checkpoint
    trained as another configuration than the one checked. Read from the conv weights' ranks."""
    dims = {
        (len(source_shapes.shapes[k]) - 2, len(target_shapes.shapes[k]) - 2)
        for k in keys
        if k in source_shapes.shapes and k in target_shapes.shapes and k.endswith(".weight")
        and len(source_shapes.shapes[k]) in (4, 5) and len(target_shapes.shapes[k]) in (4, 5)
        and len(source_shapes.shapes[k]) != len(target_shapes.shapes[k])
    }
    if len(dims) != 1:
        return None
    ((s_dim, t_dim),) = dims
    note = f"dimension: the source weights are {s_dim}D, the target network {t_dim}D"
    checked = source.configuration.name
    if weights_configuration and weights_configuration != checked:
        note += f"; the weights were trained as {weights_configuration}, checked as {checked}"
    return Intervention(
        causes=(Cause("weights' dimension", f"{s_dim}D", f"{t_dim}D"),),
        repair=lambda spec: spec,
        breaks=lambda spec: spec,
        note=note,
    )


def _with_patch_size(patch_size: Json) -> t.Callable[[NetworkSpec], NetworkSpec]:
    """A trainer-built spec whose plans (the trainer's ConfigurationManager) carry another patch size."""
    import json

    def apply(spec: NetworkSpec) -> NetworkSpec:
        context = spec.trainer_context
        if spec.trainer is None or context is None:
            return spec  # get_network_from_plans never reads the patch size
        plans = json.loads(context.plans_json)
        plans["configurations"][context.configuration]["patch_size"] = copy.deepcopy(patch_size)
        return replace(spec, trainer_context=replace(context, plans_json=json.dumps(plans, sort_keys=True)))

    return apply


def _patch_size_intervention(source: Side, target: Side) -> Intervention | None:
    """The patch size, for networks built by a trainer that reads it (Primus: the learned positional embedding).

    nnU-Net's plans networks do not depend on the patch size; a trainer's
    ``build_network_architecture`` may (it receives the ConfigurationManager), so the patch
    size is intervened on whenever a side is built through a trainer.
    """
    if source.spec.trainer is None and target.spec.trainer is None:
        return None
    a, b = source.configuration.data.get("patch_size"), target.configuration.data.get("patch_size")
    if a is None or b is None or list(a) == list(b):
        return None
    path = _Paths(target)
    return Intervention(
        causes=(Cause(path(("patch_size",)), list(a), list(b)),),
        repair=_with_patch_size(list(a)),
        breaks=_with_patch_size(list(b)),
        note="patch size: the trainer's network has tensors sized by it (a learned positional embedding)",
    )


def _class_path(side: Side) -> str:
    from plancheck.inputs.paths import format_path, locate

    return format_path(locate(side.plans, side.configuration, ("architecture", "network_class_name")))


def _channel_parts(side: Side) -> tuple[Json, int, Json]:
    """(channel description, number of cascade label channels, labels) of one side."""
    if side.dataset_json is None:
        return side.configuration.data.get("normalization_schemes"), 0, None
    data = side.dataset_json.data
    channels = data.get(side.dataset_json.channel_key)
    cascade = side.spec.input_channels - len(channels) if side.configuration.is_cascade else 0
    return channels, cascade, data.get("labels")


def _input_channel_causes(source: Side, target: Side) -> tuple[Cause, ...]:
    s_channels, s_cascade, s_labels = _channel_parts(source)
    t_channels, t_cascade, t_labels = _channel_parts(target)
    s_count = source.spec.input_channels - s_cascade
    t_count = target.spec.input_channels - t_cascade
    causes: list[Cause] = []
    if s_count != t_count:
        if target.dataset_json is not None:
            causes.append(Cause(f"dataset.json:{target.dataset_json.channel_key}", s_channels, t_channels))
        else:
            from plancheck.inputs.paths import format_path, locate

            param = format_path(locate(target.plans, target.configuration, ("normalization_schemes",)))
            causes.append(Cause(param, s_channels, t_channels))
    if s_cascade != t_cascade:
        causes.append(Cause("dataset.json:labels (foreground labels fed to the cascade)", s_labels, t_labels))
    if not causes:  # pragma: no cover - the counts differ, so one of the two parts does
        causes.append(Cause("input channels", source.spec.input_channels, target.spec.input_channels))
    return tuple(causes)


def _failing(source: ShapeTable, target: ShapeTable) -> set[str]:
    keys = set(target.shapes) | set(source.shapes)
    return {k for k in keys if key_status(k, source, target) in _BAD}


def _try_shapes(spec: NetworkSpec, label: str) -> ShapeTable | None:
    try:
        return network_shapes(spec, source=label)
    except InputError:
        return None


def attribute(
    source: Side,
    target: Side,
    source_shapes: ShapeTable,
    target_shapes: ShapeTable,
    rows: t.Sequence[TensorRow],
    *,
    weights_configuration: str | None = None,
) -> tuple[tuple[TensorRow, ...], tuple[RootCause, ...]]:
    """Attach causes to every mismatch/missing/unused row, and count what each cause explains.

    ``source_shapes`` are the shapes actually compared on the source side (a network
    built from the source's plans, or a checkpoint's tensors). The "break" direction
    rebuilds the source from its spec, so it is used only when that spec reproduces
    ``source_shapes``.
    """
    failing = _failing(source_shapes, target_shapes)
    if not failing:
        return tuple(rows), ()
    candidates = interventions(source, target)
    explained: dict[str, list[int]] = {}
    for index, iv in enumerate(candidates):
        repaired = _try_shapes(iv.repair(target.spec), target.label)
        if repaired is None:
            continue
        for key in failing - _failing(source_shapes, repaired):
            explained.setdefault(key, []).append(index)
    unexplained = failing - set(explained)
    if unexplained:
        own = _try_shapes(source.spec, source.label)
        if own is not None and own.shapes == source_shapes.shapes:
            for index, iv in enumerate(candidates):
                broken = _try_shapes(iv.breaks(source.spec), source.label)
                if broken is None:
                    continue
                newly = _failing(source_shapes, broken) & unexplained
                for key in newly:
                    explained.setdefault(key, []).append(index)
    unexplained = failing - set(explained)
    if unexplained:
        dimension = _dimension_cause(unexplained, source_shapes, target_shapes, source, weights_configuration)
        if dimension is not None:  # every failure follows from weights of another dimension
            candidates.append(dimension)
            for key in unexplained:
                explained[key] = [len(candidates) - 1]
    joint = tuple(c for iv in candidates for c in iv.causes)

    new_rows: list[TensorRow] = []
    counts: dict[int, list[int]] = {}
    joint_counts = [0, 0]
    joint_rows = 0
    for row in rows:
        if row.status not in _BAD:
            new_rows.append(row)
            continue
        # Counted as the summary counts: failing target tensors, once each (unused ones are the source's only).
        counted = row.status is not Status.UNUSED and row.target_shape is not None
        indices = sorted({i for k in row.keys for i in explained.get(k, ())})
        if indices:
            causes = tuple(c for i in indices for c in candidates[i].causes)
            for i in indices:
                acc = counts.setdefault(i, [0, 0])
                acc[0] += counted
                acc[1] += row.parameters if counted else 0
        else:
            causes = joint or (Cause("no plans field differs: the weights do not match their plans", None, None),)
            joint_rows += 1
            joint_counts[0] += counted
            joint_counts[1] += row.parameters if counted else 0
        new_rows.append(replace(row, causes=causes))

    root: list[RootCause] = []
    for i in sorted(counts, key=lambda i: (-counts[i][1], -counts[i][0], i)):
        iv = candidates[i]
        note = iv.note
        group: tuple[Cause, ...] = ()
        if len(iv.causes) > 1:
            rest = ", ".join(field_name(c.parameter) for c in iv.causes[1:])
            note = f"{note}; together with {rest}" if note else f"together with {rest}"
            group = iv.causes
        if not counts[i][0]:
            only = "explains only tensors the source alone has (unused: nnU-Net drops them), none that fail"
            note = f"{note}; {only}" if note else only
        root.append(RootCause(iv.causes[0], counts[i][0], counts[i][1], note, group))
    if joint_rows:
        if joint:
            head = Cause(together(joint), None, None)
            groups = "; ".join(iv.note.split(";")[0].split(" (")[0]
                               for iv in candidates if len(iv.causes) > 1 and iv.note)
            note = "no single difference explains these; only the differences together do"
            note = f"{note} ({groups})" if groups else note
            root.append(RootCause(head, joint_counts[0], joint_counts[1], note, joint))
        else:
            head = Cause("(unexplained)", None, None)
            note = "no plans difference explains these"
            root.append(RootCause(head, joint_counts[0], joint_counts[1], note))
    return tuple(new_rows), tuple(root)


def field_name(parameter: str) -> str:
    """``configurations.3d_fullres.architecture.arch_kwargs.strides[4]`` -> ``strides``; dataset.json fields whole."""
    import re

    head = parameter.split(" (", 1)[0]
    if head.startswith("dataset.json:"):
        return head
    return re.sub(r"(\[\d+\])+$", "", head.rsplit(".", 1)[-1])


#: Fields named in a group's short line before the rest is counted ("and 3 more").
_GROUP_NAMES = 6


def together(causes: t.Sequence[Cause]) -> str:
    """A group of fields in one short line: the fields (each once), then "together"."""
    names = list(dict.fromkeys(field_name(c.parameter) for c in causes))
    if len(names) > _GROUP_NAMES:
        names = [*names[: _GROUP_NAMES - 1], f"{len(names) - _GROUP_NAMES + 1} more"]
    return ", ".join(names) + " together"
