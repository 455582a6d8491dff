"""``plancheck plan-pretraining``: which fine-tuning datasets one pretraining can serve, and the plans for it.

The pipeline, per configuration:

1. **load**: the pretraining dataset (SOURCE) and every target, as ``check`` reads them;
2. **build**: each target's network once, on the meta device, by nnU-Net's own code (cached by spec);
3. **group**: targets whose shape tables are equal, segmentation heads excluded (nnU-Net's
   ``load_pretrained_weights`` skips those), need one pretraining between them;
4. **merge** (``max_pretrainings``): the largest groups are kept; every other group goes to the kept
   group its targets are cheapest to unify to (``--fix`` planned on its representative: the
   planner's memory estimate against the target's own network), and each of its targets is
   unified to that architecture by ``--fix``;
5. **remedy**: per group, ``--fix`` of the pretraining dataset's plans towards the group's
   architecture (``preprocessing`` ``source``: its own preprocessing, the ``architecture``
   strategy; ``target``: nnU-Net's move route, the ``move`` strategy), checked to load into every
   target it serves before anything is written, then written atomically and read back and
   checked again;
6. **render**: :class:`~plancheck.records.pretraining.PretrainingPlan`, with the nnU-Net commands.

Every file is checked for existence before the first one is written, so a refusal writes nothing.
"""

from __future__ import annotations

import math
import os
import shlex
import typing as t

from plancheck.errors import ConfigurationNotFound, PlancheckError, ReadBackError, Unfixable, UsageError
from plancheck.records.pretraining import Architecture, Group, Merge, PretrainingPlan, TargetRow, Unified

__all__ = ["PretrainingPlan", "plan_pretraining"]

Json = t.Any
Progress = t.Callable[[int, int, str], None]
PREPROCESSING = ("source", "target")


class _Target(t.NamedTuple):
    label: str
    input: t.Any  #: plancheck.inputs.targets.TargetInput
    side: t.Any  #: plancheck.network.spec.Side
    shapes: t.Any  #: ShapeTable
    report: t.Any  #: the check against the pretraining dataset's own network


def _signature(shapes: t.Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """What nnU-Net's loader compares: every key but the segmentation heads', with its shape."""
    from plancheck.inputs.shapes import is_head

    return tuple(sorted((k, tuple(s)) for k, s in shapes.shapes.items() if not is_head(k)))


def _parameters(shapes: t.Any) -> int:
    from plancheck.inputs.shapes import is_head, numel

    return sum(numel(shapes.shapes[g[0]]) for g in shapes.groups if not any(is_head(k) for k in g))


def _architecture(target: _Target) -> Architecture:
    kwargs = (target.side.configuration.data.get("architecture") or {}).get("arch_kwargs") or {}

    def tuples(value: t.Any) -> tuple[tuple[int, ...], ...] | None:
        return None if value is None else tuple(tuple(int(x) for x in (v if isinstance(v, list) else [v]))
                                                for v in value)

    features = kwargs.get("features_per_stage")
    return Architecture(
        network_class=target.side.spec.class_name, input_channels=target.side.spec.input_channels,
        n_stages=kwargs.get("n_stages"),
        features_per_stage=None if features is None else tuple(int(f) for f in features),
        kernel_sizes=tuples(kwargs.get("kernel_sizes")), strides=tuples(kwargs.get("strides")),
        parameters=_parameters(target.shapes))


def _share(report: t.Any) -> float:
    return report.summary.parameter_share


def plan_pretraining(
    source: t.Any,
    targets: t.Sequence[t.Any],
    configurations: t.Sequence[str] | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    max_pretrainings: int | None = None,
    preprocessing: str = "source",
    force: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    source_dataset_json: t.Any = None,
    target_dataset_json: t.Any = None,
    plans_identifier: str = "nnUNetPlans",
    target_plans_identifier: str | None = None,
    allow_import: t.Iterable[str] = (),
    trainer: str = "nnUNetTrainer",
    target_trainer: str | None = None,
    target_configuration: str | None = None,
) -> PretrainingPlan:
    """Group ``targets`` by network, plan one pretraining of ``source`` (the pretraining dataset) per group.

    ``source``: the pretraining dataset's plans, preprocessed folder or dataset ID (under
    ``$nnUNet_preprocessed``). ``targets``: anything ``check`` takes as a target.
    ``configurations``: default ``3d_fullres``. ``out``: folder for the pretraining plans (default:
    next to the source's plans, where ``-p`` finds them). ``max_pretrainings``: at most that many
    pretrainings per configuration (groups merged, targets unified by ``--fix``).
    ``preprocessing``: ``source`` (default) or ``target`` (copy the target's preprocessing too, as
    ``nnUNetv2_move_plans_between_datasets`` does). ``dry_run``: write nothing. ``trainer`` and
    ``target_trainer`` (default: ``trainer``) are named in the printed pretraining and fine-tuning
    commands; the networks are built from the plans, as nnU-Net's default trainer builds them.
    ``target_configuration``: the targets' configuration, if not the source's (one configuration only).
    """
    from plancheck.check import check_target, prepare_source
    from plancheck.inputs.targets import resolve_target

    if preprocessing not in PREPROCESSING:
        raise UsageError(f"`preprocessing` {preprocessing!r}: one of {', '.join(PREPROCESSING)}")
    if max_pretrainings is not None and (type(max_pretrainings) is not int or max_pretrainings < 1):
        raise UsageError(f"`max_pretrainings` {max_pretrainings!r}: a positive integer")
    if not targets:
        raise UsageError("plan-pretraining needs at least one TARGET")
    out_dir = None if out is None else os.path.abspath(os.fspath(out))
    if out_dir is not None and not os.path.isdir(out_dir):
        raise UsageError(f"-o {out_dir}: not a folder (the pretraining plans are written into it)")
    allow = tuple(allow_import)
    src_in = resolve_target(source, plans_identifier=plans_identifier, target_dataset_json=source_dataset_json)
    from plancheck.remedies.commands import plans_identifier as identifier_of

    configurations = list(dict.fromkeys(configurations or ["3d_fullres"]))
    if target_configuration is not None and len(configurations) != 1:
        raise UsageError(f"`target_configuration` {target_configuration!r} pairs one source configuration with it; "
                         f"got {len(configurations)}")
    groups: list[Group] = []
    rows: list[TargetRow] = []
    notes: list[str] = []
    distinct: dict[str, int] = {}
    pending: list[tuple[t.Any, t.Callable[[str], None]]] = []  # (FixResult, read-back check) to write
    src_ident = os.path.splitext(os.path.basename(src_in.plans.path))[0] if src_in.plans.path else \
        str(src_in.plans.data.get("plans_name") or "nnUNetPlans")
    total = len(configurations) * len(targets)
    for ci, configuration in enumerate(configurations):
        try:
            prepared = prepare_source(src_in.plans, configuration=configuration,
                                      source_dataset_json=src_in.dataset_json, allow_import=allow)
        except ConfigurationNotFound as e:
            rows += [TargetRow(str(tg), configuration, not_applicable=f"the pretraining dataset has {e.message}")
                     for tg in targets]
            continue
        src_side = prepared.side
        src_ident = identifier_of(src_side)
        loaded: list[_Target] = []
        for ti, tg in enumerate(targets):
            label = str(tg)
            if progress is not None:
                progress(ci * len(targets) + ti, total, label)
            try:
                tgt_in = resolve_target(tg, plans_identifier=target_plans_identifier or plans_identifier,
                                        target_dataset_json=target_dataset_json)
                checked = check_target(prepared, tgt_in.plans,
                                       target_configuration=target_configuration or configuration,
                                       target_dataset_json=tgt_in.dataset_json, explain=False)
            except ConfigurationNotFound as e:
                rows.append(TargetRow(label, configuration, not_applicable=f"the target has {e.message}"))
                continue
            except PlancheckError as e:
                rows.append(TargetRow(label, configuration, error=str(e)))
                continue
            from plancheck.network.build import network_shapes

            side = checked.target
            loaded.append(_Target(tgt_in.label, tgt_in, side, network_shapes(side.spec, source=side.label),
                                  checked.report))
        if progress is not None and ci == len(configurations) - 1:
            progress(total, total, "")
        # group: equal shape tables, heads excluded, in first-appearance order
        by_signature: dict[tuple, list[_Target]] = {}
        for target in loaded:
            by_signature.setdefault(_signature(target.shapes), []).append(target)
        raw = list(by_signature.values())
        by_label = {target.label: target for target in loaded}
        distinct[configuration] = len(raw)
        kept, assignment = _merge(raw, max_pretrainings,
                                  lambda g: g[0].side.spec.input_channels == src_side.spec.input_channels)
        number_of = {id(g[0]): n for n, g in enumerate(kept, 1)}
        own_number = {target.label: i for i, g in enumerate(raw, 1) for target in g}
        merges: dict[int, list[Merge]] = {n: [] for n in range(1, len(kept) + 1)}
        unified_of: dict[str, Unified] = {}
        for members, into in assignment:
            n = number_of[id(into[0])]
            rep = into[0]
            for target in members:
                plans_name = f"{identifier_of(target.side)}_pretrain_{configuration}_{n}"
                unified = _unify(rep.side, rep.shapes, target, plans_name=plans_name)
                merges[n].append(Merge(target.label, own_number[target.label], unified))
                unified_of[target.label] = unified
        for n, members in enumerate(kept, 1):
            group = _pretraining_group(n, configuration, members, merges[n], src_side, out_dir, preprocessing,
                                       src_ident, (trainer, target_trainer or trainer))
            if group.pretraining is not None and group.refusal is None:
                checks = _served(members, merges[n], by_label)
                _verify(group.pretraining, checks, src_in, configuration, shown=group.plans or "")
                if group.pretraining.changed:
                    pending.append((group.pretraining, _read_back(checks, src_in, group.pretraining.configuration,
                                                                  group.plans or "")))
                for merge in merges[n]:
                    if merge.unified.fix is not None and merge.unified.fix.changed:
                        pending.append((merge.unified.fix, _read_back_merge(
                            rep=members[0], fix=merge.unified.fix,
                            dataset_json=by_label[merge.target].input.dataset_json)))
            groups.append(group)
        group_of = {label: g.number for g in groups if g.configuration == configuration for label in g.served}
        ok_groups = {g.number for g in groups if g.configuration == configuration and g.refusal is None}
        for target in loaded:
            own = _unify(src_side, prepared.shapes, target, plans_name=None)
            number = group_of.get(target.label)
            merged_fix = unified_of.get(target.label)
            served = number in ok_groups and (merged_fix is None or merged_fix.fix is not None)
            rows.append(TargetRow(
                target.label, target.side.configuration.name, group=number, merged=target.label in unified_of,
                as_is_loads=target.report.compatible, as_is_share=_share(target.report),
                transfer_share=_transfer_share(prepared, target),
                unified=own, targeted_share=1.0 if served else None))
    if out_dir is not None and src_in.plans.path and \
            os.path.abspath(os.path.dirname(src_in.plans.path)) != out_dir and any(
                g.pretraining is not None and g.pretraining.changed for g in groups):
        notes.append(f"the pretraining plans go to {out_dir}, not next to the source's plans: copy them into the "
                     "source dataset's folder under $nnUNet_preprocessed before the printed commands, which find "
                     "plans there (-plans_name / -p)")
    if dry_run:
        return PretrainingPlan(source=src_in.label, source_plans_name=src_ident, configurations=tuple(configurations),
                               groups=tuple(groups), rows=tuple(rows), preprocessing=preprocessing,
                               max_pretrainings=max_pretrainings, dry_run=True, notes=tuple(notes), distinct=distinct)
    _write_all(pending, force=force)
    written = {fix.path for fix, _ in pending}
    import dataclasses

    groups = [dataclasses.replace(g, written=g.plans in written) for g in groups]
    return PretrainingPlan(source=src_in.label, source_plans_name=src_ident, configurations=tuple(configurations),
                           groups=tuple(groups), rows=tuple(rows), preprocessing=preprocessing,
                           max_pretrainings=max_pretrainings, notes=tuple(notes), distinct=distinct)


# --------------------------------------------------------------------------- merge


def _merge(raw: list[list[_Target]], limit: int | None, servable: t.Callable[[list[_Target]], bool]
           ) -> tuple[list[list[_Target]], list[tuple[list[_Target], list[_Target]]]]:
    """``(kept groups, [(members of a merged group, the kept group they join)])``.

    Without a limit, or within it, every group is kept. Otherwise, among the groups the
    pretraining dataset can serve at all (``servable``: the same input channels), the ``limit``
    largest (ties: first appearance) are kept, and each other one joins the kept group whose
    architecture its representative is cheapest to unify to: the ``--fix`` that loads with the
    smallest change of the planner's memory estimate (|log ratio|), then of the parameter count;
    a group no kept group can absorb stays a pretraining of its own (the limit is then not met).
    Groups no pretraining can serve are left as they are (they count towards no limit).
    """
    candidates = [i for i, g in enumerate(raw) if servable(g)]
    if limit is None or len(candidates) <= limit:
        return raw, []
    order = sorted(candidates, key=lambda i: (-len(raw[i]), i))
    keep = set(order[:limit]) | {i for i in range(len(raw)) if i not in candidates}
    kept = [raw[i] for i in sorted(keep)]
    absorbing = [raw[i] for i in sorted(order[:limit])]
    assignment: list[tuple[list[_Target], list[_Target]]] = []
    for i in sorted(order[limit:]):
        members = raw[i]
        best: tuple[float, float] | None = None
        into: list[_Target] | None = None
        for group in absorbing:
            unified = _unify(group[0].side, group[0].shapes, members[0], plans_name=None)
            if unified.fix is None:
                continue
            ratio = unified.memory_ratio
            cost = (abs(math.log(ratio)) if ratio else math.inf,
                    abs(math.log(max(unified.parameters_new, 1) / max(unified.parameters_own, 1))))
            if best is None or cost < best:
                best, into = cost, group
        if into is None:
            kept.append(members)
        else:
            assignment.append((members, into))
    return kept, assignment


def _unify(rep_side: t.Any, rep_shapes: t.Any, target: _Target, *, plans_name: str | None) -> Unified:
    """``--fix`` of ``target`` towards the network of ``rep_side`` (planned, not written)."""
    from plancheck.remedies.fix import plan_fix

    try:
        fix = plan_fix(rep_side, target.side, plans_name=plans_name)
    except Unfixable as e:
        return Unified(None, e.message, _parameters(target.shapes), _parameters(rep_shapes))
    return Unified(fix, None, _parameters(target.shapes), _parameters(rep_shapes))


def _transfer_share(prepared: t.Any, target: _Target) -> float | None:
    """The share ``transfer --strategy adapt`` carries into the target's own network, as ``check --transfer`` says."""
    from plancheck.transfer import plan_for

    try:
        return plan_for(prepared, target.side, "adapt").share
    except PlancheckError:
        return None


# --------------------------------------------------------------------------- remedy


def _pretraining_group(n: int, configuration: str, members: list[_Target], merges: list[Merge], src_side: t.Any,
                       out_dir: str | None, preprocessing: str, src_ident: str, trainers: tuple[str, str]) -> Group:
    from plancheck.remedies.fix import plan_fix

    rep = members[0]
    plans_name = f"{src_ident}_pretrain_{configuration}_{n}"
    out = None if out_dir is None else os.path.join(out_dir, f"{plans_name}.json")
    base: dict[str, t.Any] = dict(number=n, configuration=configuration, targets=tuple(m.label for m in members),
                architecture=_architecture(rep), merged=tuple(merges))
    theirs, mine = rep.side.spec.input_channels, src_side.spec.input_channels
    if theirs != mine:
        return Group(**base, refusal=(
            f"the pretraining dataset has {mine} input channel{'s' if mine != 1 else ''} "
            f"({src_side.input_channels_from}), these targets {theirs}: plans cannot change that; pretrain on data "
            f"with {theirs}, or carry the weights over with plancheck transfer --channel-map"))
    try:
        fix = plan_fix(rep.side, src_side, strategy="architecture" if preprocessing == "source" else "move",
                       plans_name=plans_name, out=out)
    except Unfixable as e:
        return Group(**base, refusal=f"plans cannot give the pretraining dataset this network: {e.message}")
    commands = _commands(fix, src_side, members, merges, trainers)
    return Group(**base, pretraining=fix, commands=commands)


def _results_path(dataset: str | None, trainer: str, plans_name: str, configuration: str) -> str:
    """Where ``nnUNetv2_train DATASET C all -tr TRAINER -p PLANS`` puts its final checkpoint (nnU-Net's
    ``get_output_folder``: ``$nnUNet_results/DATASET/TRAINER__PLANS__CONFIGURATION/fold_all``)."""
    name = dataset or "DATASET"
    return f"$nnUNet_results/{name}/{trainer}__{plans_name}__{configuration}/fold_all/checkpoint_final.pth"


def _commands(fix: t.Any, src_side: t.Any, members: list[_Target], merges: list[Merge],
              trainers: tuple[str, str]) -> tuple[str, ...]:
    from plancheck.inputs.datasets import command_id
    from plancheck.remedies.commands import DEFAULT_TRAINER, plans_identifier, preprocess_command

    pretrain_tr, finetune_tr = trainers

    def tr(name: str) -> str:
        return "" if name == DEFAULT_TRAINER else f" -tr {shlex.quote(name)}"

    dataset = src_side.plans.dataset_name
    configuration = fix.configuration
    plans_name = plans_identifier(src_side) if fix.already_compatible else fix.plans_name
    out: list[str] = []
    if not fix.already_compatible and any(c.startswith("nnUNetv2_preprocess ") for c in fix.commands):
        out.append(preprocess_command(dataset, plans_name, configuration))
    out.append(f"nnUNetv2_train {command_id(dataset)} {shlex.quote(configuration)} all -p {shlex.quote(plans_name)}"
               + tr(pretrain_tr))
    weights = _results_path(dataset, pretrain_tr, plans_name, configuration)
    quoted = '"$nnUNet_results"' + shlex.quote(weights[len("$nnUNet_results"):])

    def train(target: t.Any, plans: str) -> str:
        return (f"nnUNetv2_train {command_id(target.plans.dataset_name)} {shlex.quote(target.configuration.name)} "
                f"FOLD -p {shlex.quote(plans)}{tr(finetune_tr)} -pretrained_weights {quoted}")

    for member in members:
        out.append(train(member.side, plans_identifier(member.side)))
    for merge in merges:
        f = merge.unified.fix
        if f is None:
            continue
        target_dataset = f.new_plans.get("dataset_name")
        if f.changed:
            out.append(preprocess_command(target_dataset, f.plans_name, f.configuration))
        out.append(f"nnUNetv2_train {command_id(target_dataset)} {shlex.quote(f.configuration)} FOLD "
                   f"-p {shlex.quote(f.plans_name)}{tr(finetune_tr)} -pretrained_weights {quoted}")
    return tuple(out)


def _served(members: list[_Target], merges: list[Merge],
            by_label: dict[str, _Target]) -> list[tuple[str, t.Any, str, t.Any]]:
    """``(label, plans, configuration, dataset.json)`` of every target a group's pretraining must load into:
    the members' own plans, the merged targets' unified plans (in memory until written)."""
    from plancheck.inputs.plans import PlansFile

    out = [(m.label, m.side.plans, m.side.configuration.name, m.input.dataset_json) for m in members]
    for merge in merges:
        f = merge.unified.fix
        if f is not None:
            out.append((merge.target, PlansFile(f.new_plans, f.path), f.configuration,
                        by_label[merge.target].input.dataset_json))
    return out


def _loads_into(source_plans: t.Any, configuration: str, source_dj: t.Any,
                served: list[tuple[str, t.Any, str, t.Any]]) -> list[str]:
    """The targets the network of ``source_plans`` does not load into (nnU-Net's loader rule, on meta networks)."""
    from plancheck.check import check_target, prepare_source

    prepared = prepare_source(source_plans, configuration=configuration, source_dataset_json=source_dj)
    failing = []
    for label, plans, c, dj in served:
        report = check_target(prepared, plans, target_configuration=c, target_dataset_json=dj, explain=False).report
        if not report.compatible:
            stop = report.first_failure.key if report.first_failure else "?"
            failing.append(f"{label} (nnU-Net would stop at {stop})")
    return failing


def _verify(fix: t.Any, served: list, src_in: t.Any, configuration: str, *, shown: str) -> None:
    """Before anything is written: the planned pretraining plans load into every target they serve."""
    from plancheck.inputs.plans import PlansFile

    plans = PlansFile(fix.new_plans, fix.path) if fix.changed else src_in.plans
    failing = _loads_into(plans, fix.configuration, src_in.dataset_json, served)
    if failing:  # pragma: no cover - a bug in the fix, not in the input
        raise ReadBackError(f"the pretraining plans would not load into {', '.join(failing)}; nothing was written",
                            path=shown)


def _read_back(served: list, src_in: t.Any, configuration: str, shown: str) -> t.Callable[[str], None]:
    def check(tmp: str) -> None:
        failing = _loads_into(tmp, configuration, src_in.dataset_json, served)
        if failing:
            raise ReadBackError(f"the written pretraining plans do not load into {', '.join(failing)}; this file "
                                "was not written", path=shown)

    return check


def _read_back_merge(*, rep: _Target, fix: t.Any, dataset_json: t.Any) -> t.Callable[[str], None]:
    """A merged target's unified plans, read back: the group's network loads into them."""

    def check(tmp: str) -> None:
        failing = _loads_into(rep.side.plans, rep.side.configuration.name, rep.input.dataset_json,
                              [(fix.path, tmp, fix.configuration, dataset_json)])
        if failing:
            raise ReadBackError("the written unified plans do not load the group's network; this file was not "
                                "written", path=fix.path)

    return check


def _write_all(pending: list[tuple[t.Any, t.Callable[[str], None]]], *, force: bool) -> None:
    """Every file, each atomically and read back; none if any exists without ``force`` (checked first)."""
    from plancheck.errors import OutputExists
    from plancheck.remedies.fix import write_fix

    if not force:
        for fix, _ in pending:
            if fix.path is not None and os.path.lexists(fix.path):
                raise OutputExists("exists; not overwritten (pass `force` to replace it); nothing was written",
                                   path=fix.path)
    paths = [fix.path for fix, _ in pending]
    if len(set(paths)) != len(paths):  # pragma: no cover - names carry configuration and group number
        raise UsageError("two plans files would have the same name")
    for fix, check in pending:
        write_fix(fix, force=force, check=check)
