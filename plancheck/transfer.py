"""``plancheck transfer``: keep the fine-tuning dataset's plans, carry the pretrained weights into its network.

The pipeline: resolve the source (weights) and the target as ``check`` does; build the
target network on the CPU with nnU-Net's own initialisation (seeded) and the source network
on the meta device (for its declarations); plan which tensor goes where
(:mod:`plancheck.remedies.transfer_plan`, pure); read only the carried tensors
(:mod:`plancheck.inputs.checkpoint.data`, no code from the file); apply the rules
(:mod:`plancheck.remedies.adapt`); write ``{"network_weights": ..., "plancheck_transfer": ...}``
atomically, after reading it back with the safe reader and checking it against the target:
a file that fails that check never takes its name and is removed (:class:`~plancheck.errors.ReadBackError`, exit 5).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import typing as t

from plancheck.records.transfer import TransferResult
from plancheck.errors import InputError, OutputExists, PlancheckError, ReadBackError, UsageError
from plancheck.remedies.transfer_plan import (
    ChannelMap,
    Layout,
    Strategy,
    TransferPlan,
    parse_channel_map,
    plan_transfer,
)

if t.TYPE_CHECKING:
    import torch

    from plancheck.check import PreparedSource
    from plancheck.network.spec import Side

__all__ = ["PROVENANCE_KEY", "ReadBackError", "TransferResult", "VerifyError", "layout_of", "plan_for", "source_layout",
           "transfer"]

#: Key of the provenance record in the written checkpoint (next to ``network_weights``).
PROVENANCE_KEY = "plancheck_transfer"
DEFAULT_SEED = 0
Json = t.Any


#: the read-back failure's earlier name (exit 4 then, 5 now)
VerifyError = ReadBackError


# --------------------------------------------------------------------------- layouts


def layout_of(network: torch.nn.Module, table: t.Any) -> Layout:
    """A network's declarations (dynamic_network_architectures' ``key_to_encoder``, ``key_to_stem``,
    ``keys_to_in_proj``; the decoder's level-indexed module lists) with the shape table to plan on."""
    import torch

    encoder = getattr(network, "key_to_encoder", None)
    stem = getattr(network, "key_to_stem", None)
    in_proj = tuple(getattr(network, "keys_to_in_proj", ()) or ())
    n_stages = None
    if isinstance(encoder, str):
        try:
            stages = network.get_submodule(encoder)
            n_stages = len(stages) if isinstance(stages, (torch.nn.ModuleList, torch.nn.Sequential)) else None
        except AttributeError:
            encoder = None
    bottom: list[str] = []
    decoder = getattr(network, "decoder", None)
    if n_stages and isinstance(decoder, torch.nn.Module):
        for name, child in decoder.named_children():
            if isinstance(child, torch.nn.ModuleList) and len(child) == n_stages - 1:
                bottom.append(f"decoder.{name}")
    kinds: dict[str, str] = {}
    conv_t = torch.nn.modules.conv._ConvTransposeNd
    conv = torch.nn.modules.conv._ConvNd
    for name, module in network.named_modules(remove_duplicate=False):
        if isinstance(module, conv):
            kinds[f"{name}.weight"] = "transpconv" if isinstance(module, conv_t) else "conv"
    return Layout(
        table=table,
        encoder=encoder if isinstance(encoder, str) else None,
        stem=stem if isinstance(stem, str) else None,
        in_proj=in_proj,
        levels_from_top=(encoder,) if isinstance(encoder, str) else (),
        levels_from_bottom=tuple(bottom),
        n_stages=n_stages,
        kinds=kinds,
    )


def _source_table(prepared: PreparedSource) -> t.Any:
    return prepared.unprefixed if prepared.unprefixed is not None else prepared.shapes


def source_layout(prepared: PreparedSource) -> Layout:
    """The source as the planner sees it: its actual tensors (key prefixes stripped), and the
    declarations of the network its own plans describe (built on the meta device).

    This is the seam for other kinds of pretrained checkpoint: one that declares its encoder
    and stem itself (an nnssl checkpoint's adaptation plan) returns a :class:`Layout` with
    those declarations and its ``network_weights`` table instead.
    """
    from plancheck.network.build import build_meta_network

    source_network = build_meta_network(prepared.side.spec, source=prepared.side.label)
    return layout_of(source_network, _source_table(prepared))


def plan_for(prepared: PreparedSource, target: Side, strategy: Strategy | str = Strategy.ADAPT,
             channel_map: ChannelMap | None = None, target_network: torch.nn.Module | None = None,
             master_verdict: t.Any = None) -> TransferPlan:
    """Plan a transfer from shapes alone (the source's actual tensors, the target's meta network).

    ``master_verdict``: an nnssl source's :class:`~plancheck.inputs.nnssl.PretrainedTrainerVerdict`; under
    ``--strategy encoder`` its outcome replaces the planner's estimate of master's strict load in the notes.
    """
    from plancheck.network.build import build_meta_network, shapes_of_module

    if target_network is None:
        target_network = build_meta_network(target.spec, source=target.label)
    plan = plan_transfer(
        source_layout(prepared),
        layout_of(target_network, shapes_of_module(target_network, origin="target network")),
        strategy,
        channel_map=channel_map,
    )
    if plan.strategy is Strategy.ENCODER and master_verdict is not None and plan.refused is None:
        plan = dataclasses.replace(plan, notes=tuple(_master_notes(list(plan.notes), plan, master_verdict)))
    return plan


# --------------------------------------------------------------------------- helpers


def train_command(target: Side, out: str | None, trainer: str | None = None) -> str:
    """``nnUNetv2_train DATASET CONF FOLD -p PLANS [-tr TRAINER] -pretrained_weights OUT`` for the target
    (:mod:`plancheck.remedies.commands`: one rule for every printed command)."""
    from plancheck.remedies.commands import plans_identifier, train_command as command

    return command(target.plans.dataset_name, target.configuration.name, None, plans_identifier(target),
                   trainer=trainer, pretrained_weights=os.path.abspath(out) if out else "OUT.pth")


def sha256_of(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for dist in ("torch", "nnunetv2", "dynamic_network_architectures"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def _provenance(result: TransferResult, prepared: PreparedSource, source_bytes: int, target: Side,
                trainer: str | None) -> dict[str, Json]:
    from plancheck import __version__

    ckpt = prepared.input.checkpoint
    assert ckpt is not None
    return {
        "tool": "plancheck transfer",
        "plancheck_version": __version__,
        "versions": _versions(),
        "strategy": str(result.plan.strategy),
        "seed": result.seed,
        "channel_map": None if result.channel_map is None else [str(c) for c in result.channel_map],
        "source": {
            "path": os.path.abspath(ckpt.path),
            "sha256": result.source_sha256,
            "bytes": source_bytes,
            "kind": prepared.input.kind,
            "configuration": prepared.side.configuration.name,
            "trainer": prepared.input.trainer,
        },
        "target": {
            "plans": result.target.plans,
            "configuration": result.target.configuration,
            "network_class": result.target.network_class,
            # what makes the file a source like any nnU-Net checkpoint (plancheck.inputs.sources reads these):
            # the target's plans and dataset.json as they were, and where they were
            "plans_path": None if target.plans.path is None else os.path.abspath(target.plans.path),
            "plans_data": target.plans.data,
            "dataset_json_path": None if target.dataset_json is None or target.dataset_json.path is None
            else os.path.abspath(target.dataset_json.path),
            "dataset_json_data": None if target.dataset_json is None else target.dataset_json.data,
            "trainer": trainer,
        },
        "parameters_total": result.plan.parameters_total,
        "parameters_carried": result.plan.parameters_carried,
        "counts": result.plan.counts(),
        "actions": {r.key: r.label for r in result.plan.tensors},
        "sources": {r.key: r.source_key for r in result.plan.tensors if r.source_key is not None},
    }


# --------------------------------------------------------------------------- the pipeline


def transfer(
    source: t.Any,
    target: t.Any,
    out: str | os.PathLike[str] | None = None,
    *,
    configuration: str | None = None,
    target_configuration: str | None = None,
    strategy: Strategy | str = Strategy.ADAPT,
    channel_map: str | ChannelMap | None = None,
    seed: int = DEFAULT_SEED,
    force: bool = False,
    dry_run: bool = False,
    source_dataset_json: t.Any = None,
    target_dataset_json: t.Any = None,
    schedule: str | None = None,
    carried_lr_ratio: float = 1.0,
    schedule_plans: str | None = None,
    **options: t.Any,
) -> TransferResult:
    """Write a checkpoint for the target's own network carrying every source tensor that honestly fits.

    ``source``: anything :func:`plancheck.check` accepts that carries weights (checkpoint,
    trained-model folder, dataset ID, bare state_dict or safetensors with ``source_plans``).
    ``target``: anything ``check`` accepts as a target. ``strategy``: ``exact``, ``encoder``
    or ``adapt`` (default). ``channel_map``: for each target input channel a source channel
    index, ``mean`` or ``new`` (``"0,new"``). Tensors not carried keep nnU-Net's own
    initialisation, drawn with ``seed``. Writes ``out`` atomically (an existing file only with
    ``force``), reads it back and checks it against the target; ``dry_run`` writes nothing.
    ``schedule`` (``carried`` or ``encoder``): also write fine-tuning plans, the target's own plans
    under ``schedule_plans`` (default ``<plans identifier>_finetune``) naming the tensors carried
    over and those to freeze, for plancheck's fine-tuning trainers
    (:mod:`plancheck.finetune`); the carried tensors train at ``carried_lr_ratio`` times the
    learning rate after the frozen phase. Other keyword options are those of :func:`plancheck.check`. Raises
    :class:`~plancheck.errors.PlancheckError` for bad input (exit codes as the CLI's).
    """
    from plancheck.check import check_target, prepare_source, split_options

    strategy = _strategy(strategy)
    cmap = parse_channel_map(channel_map)
    if type(seed) is not int:
        raise UsageError(f"`seed` must be an integer, not {seed!r}")
    from plancheck.finetune import request

    request.validate(schedule, carried_lr_ratio, schedule_plans)
    out_path = None if out is None else os.path.abspath(os.fspath(out))
    if out_path is None and not dry_run:
        raise UsageError("transfer needs `out` OUT.pth (or `dry_run`)")
    if out_path is not None and not dry_run:
        if os.path.isdir(out_path):
            raise UsageError(f"-o {out_path} is a directory; name the checkpoint file to write")
        if os.path.lexists(out_path) and not force:
            raise OutputExists("exists; not overwritten (pass `force` to replace it)", path=out_path)
    source_options, target_options = split_options(options)
    target_options.pop("explain", None)
    prepared = prepare_source(source, configuration=configuration, source_dataset_json=source_dataset_json,
                              **source_options)
    ckpt = prepared.input.checkpoint
    if ckpt is None:
        raise InputError("transfer needs weights: this is plans only (give a checkpoint, a trained-model folder, "
                         "a dataset ID under nnUNet_results, or a state_dict with `source_plans`)",
                         path=prepared.input.label)
    checked = check_target(prepared, target, target_configuration=target_configuration,
                           target_dataset_json=target_dataset_json, explain=False, **target_options)
    tgt = checked.target

    import torch

    from plancheck.network.build import build_network

    meta = build_network(tgt.spec, source=tgt.label, device="meta")
    plan = plan_for(prepared, tgt, strategy, cmap, target_network=meta,
                    master_verdict=checked.report.pretrained_trainer)
    notes = list(plan.notes)
    if prepared.prefix:
        notes.append(f"source keys carry the prefix '{prepared.prefix}': matched without it")
    trainer = target_options.get("target_trainer") or prepared.trainer_name
    from plancheck.remedies.commands import device_note, trainer_note

    finetune = None
    if schedule is not None:
        from plancheck.remedies.commands import plans_identifier

        trainer, finetune_id, finetune_path = request.setup(
            tgt.plans.path, f"{plans_identifier(tgt)}_finetune", target_options.get("target_trainer"),
            source_options.get("allow_import") or (), schedule_plans, force=force or dry_run)
        command, lookup_note = request.command(tgt.plans.dataset_name, tgt.configuration.name, finetune_id, trainer,
                                               out_path or "OUT.pth")
        notes += filter(None, [lookup_note])
        notes.append(trainer_note(trainer, "--target-trainer" if target_options.get("target_trainer")
                                  else "plancheck's fine-tuning trainer, for --schedule"))
        if plan.parameters_carried:
            from plancheck.finetune.plans import from_transfer

            finetune = from_transfer(plan, schedule, carried_lr_ratio, out_path or "OUT.pth")
    else:
        command = train_command(tgt, out_path, trainer)
        notes.append(trainer_note(trainer, "--target-trainer" if target_options.get("target_trainer")
                                  else prepared.trainer_by or None))
    notes += filter(None, [device_note()])
    result = TransferResult(
        source=prepared.summary, target=checked.report.target, plan=plan, out=out_path, written=False,
        dry_run=dry_run, verified=False, seed=seed, channel_map=cmap,
        command=command, source_sha256=None, check=checked.report,
        warnings=_transfer_warnings(prepared), notes=tuple(notes),
        finetune=finetune, finetune_trainer=trainer if schedule is not None else None,
    )
    if dry_run or plan.parameters_carried == 0:
        return result

    from plancheck.remedies.adapt import apply_steps
    from plancheck.inputs.checkpoint.data import read_tensors, tensor_nbytes

    network = initialised_network(meta, tgt, plan, seed)
    raw = _raw_keys(prepared)
    wanted = {r.source_key: raw[r.source_key] for r in plan.carried if r.source_key is not None}
    state = network.state_dict(keep_vars=True)
    # copied tensors are read straight into the network's own memory
    direct = {wanted[r.source_key]: state[r.key].data for r in plan.carried
              if r.source_key is not None and not r.steps}
    tensors = read_tensors(ckpt, wanted.values(), into=direct)
    bytes_read = sum(tensor_nbytes(ckpt.state_dict[k]) for k in wanted.values())
    with torch.no_grad():
        for row in plan.carried:
            assert row.source_key is not None
            param = state[row.key]
            value = tensors[wanted[row.source_key]]
            if value.data_ptr() != param.data_ptr():
                param.copy_(apply_steps(row.steps, value, param))
    del tensors
    digest = sha256_of(ckpt.path)
    result = dataclasses.replace(result, source_sha256=digest, bytes_read=bytes_read)
    payload = {
        "network_weights": {k: v.detach() for k, v in network.state_dict().items()},
        PROVENANCE_KEY: _provenance(result, prepared, os.path.getsize(ckpt.path), tgt, trainer),
    }
    written = _write(out_path, payload, force=force, check=lambda tmp: verify(tmp, tgt, shown=out_path))
    result = dataclasses.replace(result, written=True, verified=True, out=written)
    if finetune is not None:
        from plancheck.finetune.plans import finetune_plans, write_finetune_plans

        new = finetune_plans(tgt.plans.data, finetune, finetune_id)
        path = write_finetune_plans(finetune_path, new, tgt.plans.data, network.state_dict().keys(), force=force)
        result = dataclasses.replace(result, finetune_plans=path)
    return result


#: how the planner's note on master's strict load starts (replaced by the nnssl verdict when there is one)
_MASTER_REFUSES = "nnU-Net master's PretrainedTrainer would refuse"


def _master_notes(notes: list[str], plan: TransferPlan, verdict: t.Any) -> list[str]:
    """An nnssl source under ``--strategy encoder``: master's own verdict on the pair (plancheck.inputs.nnssl's replay)
    next to what this file carries, instead of the planner's estimate from the tensor table."""
    from plancheck.remedies.transfer_plan import Part

    kept = [n for n in notes if not n.startswith(_MASTER_REFUSES)]
    mine = [r for r in plan.tensors if r.part in (Part.STEM, Part.ENCODER)]
    carried = sum(1 for r in mine if r.carried)
    if verdict.loads:
        kept.append(f"nnU-Net master's PretrainedTrainer would load this checkpoint's encoder and stem into the target "
                    f"({verdict.encoder_tensors} + {verdict.stem_tensors} tensors); this file carries the same "
                    f"{carried} stem/encoder tensors for nnU-Net's standard -pretrained_weights loader")
    else:
        kept.append(f"{_MASTER_REFUSES} this pair ({verdict.failure}); plancheck writes the {carried} of "
                    f"{len(mine)} stem/encoder tensors that fit (see the table) and leaves the rest to nnU-Net's "
                    "initialisation")
    return kept


def initialised_network(meta: torch.nn.Module, target: Side, plan: TransferPlan, seed: int) -> torch.nn.Module:
    """The target network on the CPU, its tensors that are not carried over initialised as nnU-Net does.

    nnU-Net's construction initialises every module (``reset_parameters``), then
    ``get_network_from_plans`` applies the network's own ``initialize`` to every module
    (``network.apply(network.initialize)``: He init, zeroed biases, and for residual
    encoders the last norm of each block set to zero). Here the same two calls run, in the
    same order, only on the modules that hold a tensor that is not carried over (and, for
    ``initialize``, their ancestors), drawing from a generator seeded with ``seed``. A
    network built by a custom trainer, or with a module that has parameters but no
    ``reset_parameters``, is built in full on the CPU instead (same seed).
    """
    import torch

    from plancheck.network.build import build_network

    needed = {k for r in plan.tensors if not r.carried or _has_new_channel(r) for k in r.keys}
    owners: list[torch.nn.Module] = []
    full = target.spec.trainer is not None
    for name, module in meta.named_modules():
        own = [f"{name}.{n}" if name else n for n, _ in
               (*module.named_parameters(recurse=False), *module.named_buffers(recurse=False))]
        if any(k in needed for k in own):
            if not hasattr(module, "reset_parameters"):
                full = True
            owners.append(module)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if full:
            return build_network(target.spec, source=target.label, device="cpu")
        network = meta.to_empty(device="cpu")
        with torch.no_grad():
            for module in owners:
                module.reset_parameters()
            initialize = getattr(network, "initialize", None)
            if callable(initialize):
                keep = {id(m) for m in owners}
                _apply_post_order(network, initialize, keep)
    return network


def _apply_post_order(module: torch.nn.Module, fn: t.Callable[[torch.nn.Module], None], keep: set[int]) -> bool:
    """``module.apply(fn)`` (children first, then the module) restricted to ``keep`` and their ancestors."""
    hit = False
    for child in module.children():
        hit = _apply_post_order(child, fn, keep) or hit
    if hit or id(module) in keep:
        fn(module)
        return True
    return False


def _has_new_channel(row: t.Any) -> bool:
    return any(s.channel_map is not None and "new" in s.channel_map for s in row.steps)


def _transfer_warnings(prepared: PreparedSource) -> tuple[str, ...]:
    """The source's warnings, less those about its container: the transfer writes nnU-Net's own."""
    from plancheck.compare.warnings import loader_warnings

    container = set(loader_warnings(prepared.input))
    return tuple(w for w in prepared.warnings if w not in container)


def _strategy(value: Strategy | str) -> Strategy:
    try:
        return Strategy(value)
    except ValueError:
        raise UsageError(f"unknown strategy {value!r}; choose exact, encoder or adapt") from None


def _raw_keys(prepared: PreparedSource) -> dict[str, str]:
    """Planned (unprefixed) source key -> the key as stored in the checkpoint whose value nnU-Net would load
    (the last of a disagreeing alias group: :mod:`plancheck.compare.aliases`)."""
    from plancheck.inputs.prefixes import raw_keys

    ckpt = prepared.input.checkpoint
    assert ckpt is not None
    raw = raw_keys(ckpt, prepared.prefix)
    return {key: raw[prepared.alias_kept.get(key, key)] for key in raw}


def _write(path: str | None, payload: dict[str, Json], *, force: bool, check: t.Callable[[str], None]) -> str:
    import torch

    from plancheck.atomic import atomic_write

    assert path is not None
    try:
        return atomic_write(path, lambda fh: torch.save(payload, fh), overwrite=force, check=check)
    except FileExistsError:
        raise OutputExists("exists; not overwritten (pass `force` to replace it)", path=path) from None
    except OSError as e:
        raise InputError(f"cannot write the checkpoint: {e.strerror or e}", path=path) from e


def verify(path: str, target: Side, *, shown: str | None = None) -> None:
    """Read ``path`` back with the safe reader; it must hold every target key, with the target's shapes.

    Raises :class:`~plancheck.errors.ReadBackError` (naming ``shown``, default ``path``) on any failure; the
    caller (:func:`plancheck.atomic.atomic_write`) then removes the file it wrote.
    """
    from plancheck.network.build import network_shapes
    from plancheck.inputs.prefixes import checkpoint_shapes
    from plancheck.inputs.checkpoint import read_checkpoint

    try:
        ckpt = read_checkpoint(path)
        expected = network_shapes(target.spec, source=target.label)
        got = checkpoint_shapes(ckpt)
        problem = None
        if ckpt.container_key != "network_weights":
            problem = f"the weights are under {ckpt.container_key!r}, not 'network_weights'"
        else:
            for key, shape in expected.shapes.items():
                if key not in got.shapes:
                    problem = f"key {key} is missing"
                    break
                if got.shapes[key] != shape:
                    problem = f"key {key} has shape {got.shapes[key]}, the target needs {shape}"
                    break
            extra = [k for k in got.shapes if k not in expected.shapes]
            if problem is None and extra:
                problem = f"key {extra[0]} is not in the target network"
    except PlancheckError as e:
        problem = f"the safe reader cannot read it back ({e.message})"
    if problem is not None:
        raise ReadBackError(f"written checkpoint failed the read-back check: {problem}; nothing was written",
                          path=shown or path)
