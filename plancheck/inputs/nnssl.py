"""nnssl pretraining checkpoints: what they are, the network they describe, and master's pretrained-trainer rules.

nnssl (self-supervised pretraining for nnU-Net; the OpenMind models) saves
``{"network_weights": ..., "nnssl_adaptation_plan": ..., "citations": ...}``. nnU-Net's
master branch reads the adaptation plan in ``nnunetv2/experiment_planning/like_nnssl.py``
and loads the weights in ``nnunetv2/training/nnUNetTrainer/pretraining/pretrainedTrainer.py``.
The facts used here (field names, the rules below) come from those files; the code is
plancheck's own.

* :func:`read_plan` validates the adaptation plan copied out by the no-code checkpoint
  reader (``Checkpoint.extras``) into an :class:`NnsslPlan`. Anything malformed, or
  citations/plans beyond sane sizes, is a :class:`CheckpointError` (exit 3).
* :func:`source_plans` turns the plan's ``architecture_plans`` into an nnU-Net plans dict
  with one configuration (``3d_fullres``, as like_nnssl writes it), so the network is
  built through the same class-path allowlist as any plans file, with
  ``pretrain_num_input_channels`` input channels.
* :func:`pretrained_trainer_verdict` replays, on shapes only, what master's
  ``PretrainedTrainer.load_pretrained_weights`` does: encoder and stem only (the decoder
  is trained from scratch), the stem's input projection repeated over the new input
  channels and divided by their number, a learned positional embedding interpolated
  (trilinear) to the new patch size, ``cls_token`` dropped; each part loaded with
  ``load_state_dict`` (strict).

Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import typing as t
from dataclasses import dataclass, field

from plancheck.errors import CheckpointError
from plancheck.inputs.shapes import Shape

__all__ = [
    "CITATION_LIMIT",
    "NAMED_ARCHITECTURES",
    "NnsslPlan",
    "PretrainedTrainerVerdict",
    "pretrained_trainer_verdict",
    "read_plan",
    "source_plans",
]

Json = t.Any
PLAN_KEY = "nnssl_adaptation_plan"
#: Largest ``citations`` accepted, as JSON text (the OpenMind checkpoints carry a few KiB).
CITATION_LIMIT = 256 * 1024
#: Largest adaptation plan accepted, as JSON text (a few KiB in practice).
PLAN_LIMIT = 4 * 1024 * 1024
#: The configuration name like_nnssl.py gives the fine-tuning plans, used for the source side too.
CONFIGURATION = "3d_fullres"

#: Architectures master's ``get_network_from_name`` builds from a bare name. ``ResEncL`` is a
#: ResidualEncoderUNet with fixed arguments (copied as facts from nnunetv2/utilities/get_network_via_name.py);
#: the Primus names need the patch size and are built by master's PretrainedTrainer only.
NAMED_ARCHITECTURES: dict[str, dict[str, Json]] = {
    "ResEncL": {
        "network_class_name": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
        "arch_kwargs": {
            "n_stages": 6,
            "features_per_stage": [32, 64, 128, 256, 320, 320],
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3]] * 6,
            "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
            "n_blocks_per_stage": [1, 3, 4, 6, 6, 6],
            "n_conv_per_stage_decoder": [1, 1, 1, 1, 1],
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    },
}
_PRIMUS_NAMES = ("PrimusS", "PrimusB", "PrimusM", "PrimusL")


@dataclass(frozen=True)
class NnsslPlan:
    """An nnssl checkpoint's adaptation plan, validated."""

    class_name: str  #: ``architecture_plans.arch_class_name`` as written
    arch_kwargs: dict[str, Json]
    requires_import: tuple[str, ...]
    pretrain_input_channels: int
    pretrain_configuration: str
    pretrain_spacing: Json
    pretrain_patch_size: tuple[int, ...]  #: ``pretrain_patch_size`` if given, else the pretraining plan's
    key_to_encoder: str
    key_to_stem: str
    keys_to_in_proj: tuple[str, ...]
    key_to_lpe: str | None
    recommended_downstream_patch_size: tuple[int, ...] | None
    citations: tuple[Json, ...] = field(default=())

    def facts(self) -> dict[str, Json]:
        """What the report says the checkpoint is (JSON values)."""
        return {
            "format": "nnssl",
            "architecture": self.class_name,
            "pretrain_configuration": self.pretrain_configuration,
            "pretrain_spacing": self.pretrain_spacing,
            "pretrain_patch_size": list(self.pretrain_patch_size),
            "pretrain_num_input_channels": self.pretrain_input_channels,
            "recommended_downstream_patchsize": None if self.recommended_downstream_patch_size is None
            else list(self.recommended_downstream_patch_size),
            "key_to_encoder": self.key_to_encoder,
            "key_to_stem": self.key_to_stem,
            "keys_to_in_proj": list(self.keys_to_in_proj),
            "key_to_lpe": self.key_to_lpe,
            "citations": list(self.citations),
        }

    def citation_lines(self) -> list[str]:
        return self.citation_lines_of(self.citations)

    @staticmethod
    def citation_lines_of(citations: t.Iterable[Json]) -> list[str]:
        """One line per cited paper, as master's PretrainedTrainer prints them (apa, else bibtex)."""
        lines = []
        for cit in citations:
            if isinstance(cit, dict):
                papers = cit.get("apa_citations") or cit.get("bibtex_citations") or []
                what = f"{cit.get('type', '?')} '{cit.get('name', '?')}'"
                for paper in papers if isinstance(papers, list) else [papers]:
                    lines.append(f"{what}: {' '.join(str(paper).split())}")
            else:
                lines.append(" ".join(str(cit).split()))
        return lines


def is_nnssl(extras: t.Mapping[str, Json]) -> bool:
    return PLAN_KEY in extras


def _size(obj: Json) -> int:
    return len(json.dumps(obj, default=str))


def read_plan(extras: t.Mapping[str, Json], path: str) -> NnsslPlan:
    """Validate ``nnssl_adaptation_plan`` (and ``citations``) from ``Checkpoint.extras``."""

    def bad(problem: str) -> CheckpointError:
        return CheckpointError(f"{PLAN_KEY}: {problem}", path=path)

    plan = extras.get(PLAN_KEY)
    if not isinstance(plan, dict):
        raise bad(f"is a {type(plan).__name__}, not a dict")
    if _size(plan) > PLAN_LIMIT:
        raise bad(f"larger than {PLAN_LIMIT // (1024 * 1024)} MiB as JSON; not an adaptation plan")
    citations = extras.get("citations", [])
    if _size(citations) > CITATION_LIMIT:
        raise CheckpointError(
            f"citations: larger than {CITATION_LIMIT // 1024} KiB as JSON; refusing an nnssl checkpoint that carries "
            "more than references", path=path)
    if not isinstance(citations, (list, tuple)):
        raise CheckpointError(f"citations: is a {type(citations).__name__}, not a list", path=path)

    def need(obj: Json, key: str, kind: type | tuple[type, ...], where: str = "") -> Json:
        if not isinstance(obj, dict) or key not in obj:
            raise bad(f"no '{where}{key}'")
        value = obj[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise bad(f"'{where}{key}' is a {type(value).__name__}")
        return value

    arch = need(plan, "architecture_plans", dict)
    class_name = need(arch, "arch_class_name", str, "architecture_plans.")
    arch_kwargs = arch.get("arch_kwargs") or {}
    requires = arch.get("arch_kwargs_requiring_import") or []
    if not isinstance(arch_kwargs, dict):
        raise bad("'architecture_plans.arch_kwargs' is not a dict")
    if not isinstance(requires, (list, tuple)) or not all(isinstance(r, str) for r in requires):
        raise bad("'architecture_plans.arch_kwargs_requiring_import' is not a list of names")
    pretrain = need(plan, "pretrain_plan", dict)
    configurations = need(pretrain, "configurations", dict, "pretrain_plan.")
    if not configurations:
        raise bad("'pretrain_plan.configurations' is empty")
    config_name, config = next(iter(configurations.items()))  # like_nnssl takes the first
    where = f"pretrain_plan.configurations.{config_name}."
    patch = plan.get("pretrain_patch_size", need(config, "patch_size", (list, tuple), where))
    n_in = need(plan, "pretrain_num_input_channels", int)
    if n_in < 1:
        raise bad(f"'pretrain_num_input_channels' is {n_in}")
    keys_in_proj = need(plan, "keys_to_in_proj", (list, tuple))
    if not all(isinstance(k, str) for k in keys_in_proj):
        raise bad("'keys_to_in_proj' is not a list of key names")
    lpe = plan.get("key_to_lpe")
    if lpe is not None and not isinstance(lpe, str):
        raise bad(f"'key_to_lpe' is a {type(lpe).__name__}")
    recommended = plan.get("recommended_downstream_patchsize")
    return NnsslPlan(
        class_name=class_name,
        arch_kwargs=dict(arch_kwargs),
        requires_import=tuple(requires),
        pretrain_input_channels=n_in,
        pretrain_configuration=str(config_name),
        pretrain_spacing=config.get("spacing") if isinstance(config, dict) else None,
        pretrain_patch_size=_int_tuple(patch, "pretrain patch size", bad),
        key_to_encoder=need(plan, "key_to_encoder", str),
        key_to_stem=need(plan, "key_to_stem", str),
        keys_to_in_proj=tuple(keys_in_proj),
        key_to_lpe=lpe,
        recommended_downstream_patch_size=None if recommended is None
        else _int_tuple(recommended, "recommended_downstream_patchsize", bad),
        citations=tuple(citations),
    )


def _int_tuple(value: Json, what: str, bad: t.Callable[[str], CheckpointError]) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    ):
        raise bad(f"{what} {value!r} is not a list of positive integers")
    return tuple(value)


def source_plans(plan: NnsslPlan, path: str) -> dict[str, Json]:
    """nnU-Net plans for the pretraining network: like_nnssl.py's architecture entry, one 3d_fullres configuration.

    The input channels come from ``normalization_schemes`` (one ``ZScoreNormalization`` per
    pretraining channel, the scheme like_nnssl.py sets); spacing and patch size are the
    pretraining plan's, so preprocessing differences to the target are reported as usual.
    """
    if plan.class_name in NAMED_ARCHITECTURES:
        architecture = json.loads(json.dumps(NAMED_ARCHITECTURES[plan.class_name]))
    elif plan.class_name in _PRIMUS_NAMES:
        raise CheckpointError(
            f"{PLAN_KEY}: architecture {plan.class_name} is built by nnU-Net master's PretrainedTrainer from its "
            "name and patch size; plancheck checks nnssl U-Nets (a class path with arch_kwargs, or ResEncL) only",
            path=path,
        )
    else:
        architecture = {
            "network_class_name": plan.class_name,
            "arch_kwargs": json.loads(json.dumps(plan.arch_kwargs, default=str)),
            "_kw_requires_import": list(plan.requires_import),
        }
    spacing = (plan.pretrain_spacing if isinstance(plan.pretrain_spacing, list)
               else [1.0] * len(plan.pretrain_patch_size))
    return {
        "dataset_name": f"nnssl:{plan.pretrain_configuration}",
        "plans_name": "nnssl_adaptation_plan",
        "original_median_spacing_after_transp": spacing,
        "original_median_shape_after_transp": list(plan.pretrain_patch_size),
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": list(range(len(plan.pretrain_patch_size))),
        "transpose_backward": list(range(len(plan.pretrain_patch_size))),
        "configurations": {
            CONFIGURATION: {
                "data_identifier": f"nnssl_{plan.pretrain_configuration}",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": list(plan.pretrain_patch_size),
                "median_image_size_in_voxels": list(plan.pretrain_patch_size),
                "spacing": spacing,
                "normalization_schemes": ["ZScoreNormalization"] * plan.pretrain_input_channels,
                "use_mask_for_norm": [False] * plan.pretrain_input_channels,
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                       "force_separate_z": None},
                "architecture": architecture,
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "nnssl",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {},
    }


# --------------------------------------------------------------------------- master's pretrained trainer


@dataclass(frozen=True)
class PretrainedTrainerVerdict:
    """What master's ``PretrainedTrainer.load_pretrained_weights`` does with these weights and this target."""

    loads: bool
    failure: str | None  #: the first error, one line (``encoder: size mismatch for ...``)
    encoder_tensors: int  #: tensors the encoder's load_state_dict receives
    stem_tensors: int
    adaptations: tuple[str, ...]  #: what was changed on the way (repeat/divide, interpolation, cls_token)
    target_keys: dict[str, str | None]  #: the target network's key_to_encoder, key_to_stem, key_to_lpe

    def to_dict(self) -> dict[str, Json]:
        return {
            "loads": self.loads,
            "failure": self.failure,
            "encoder_tensors": self.encoder_tensors,
            "stem_tensors": self.stem_tensors,
            "adaptations": list(self.adaptations),
            "target_keys": dict(self.target_keys),
        }


class _Fails(Exception):
    pass


def _strip_dot(key: str) -> str:
    return key[1:] if key.startswith(".") else key


def _repeat(shape: Shape, sizes: tuple[int, ...]) -> Shape:
    """The shape of ``tensor.repeat(*sizes)`` (torch pads the shape with leading ones)."""
    if len(sizes) < len(shape):
        raise _Fails("Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor")
    padded = (1,) * (len(sizes) - len(shape)) + tuple(shape)
    return tuple(a * b for a, b in zip(padded, sizes))


def _submodule(target: t.Mapping[str, Shape], prefix: str) -> dict[str, Shape]:
    """``network.get_submodule(prefix).state_dict()`` shapes, from the whole network's state_dict."""
    head = prefix + "."
    return {k[len(head):]: s for k, s in target.items() if k.startswith(head)}


def _strict_load(what: str, given: t.Mapping[str, Shape], expected: t.Mapping[str, Shape]) -> None:
    """torch's strict ``load_state_dict``: every key present, none extra, every shape equal."""
    mismatched = [k for k in expected if k in given and tuple(given[k]) != tuple(expected[k])]
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    if not (mismatched or missing or unexpected):
        return
    parts = []
    if mismatched:
        k = mismatched[0]
        parts.append(f"{len(mismatched)} size mismatch(es), e.g. {k}: checkpoint {list(given[k])}, "
                     f"network {list(expected[k])}")
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
    raise _Fails(f"{what}.load_state_dict (strict): " + "; ".join(parts))


def _resize_pos_embed(weights: dict[str, Shape], model: t.Mapping[str, Shape], downstream: tuple[int, ...],
                      pretrained: tuple[int, ...], patch_embed: t.Sequence[int]) -> str:
    """Shape of master's ``handle_pos_embed_resize(..., "interpolate_trilinear", ...)``; returns what it did."""
    if "pos_embed" not in weights:
        raise _Fails("KeyError: 'pos_embed' (no positional embedding where the network has one)")
    if "pos_embed" not in model:
        raise _Fails("KeyError: 'pos_embed' (the network's module has no positional embedding)")
    pos = weights["pos_embed"]
    has_cls = "cls_token" in weights
    tokens = pos[1] - (1 if has_cls else 0)
    in_grid = [int(d / p) for d, p in zip(pretrained, patch_embed)]
    out_grid = [int(d / p) for d, p in zip(downstream, patch_embed)]
    if len(in_grid) != 3 or math.prod(in_grid) != tokens:
        raise _Fails(f"positional embedding of {tokens} tokens cannot be laid out as the pretraining grid {in_grid}")
    resized = math.prod(out_grid) + (1 if "cls_token" in model else 0)
    weights["pos_embed"] = (pos[0], resized, pos[2])
    return f"pos_embed interpolated (trilinear) from a {in_grid} to a {out_grid} token grid"


def pretrained_trainer_verdict(
    plan: NnsslPlan,
    weights: t.Mapping[str, Shape],
    target: t.Mapping[str, Shape],
    *,
    target_key_to_encoder: str | None,
    target_key_to_stem: str | None,
    target_key_to_lpe: str | None,
    target_input_channels: int,
    target_patch_size: t.Sequence[int],
) -> PretrainedTrainerVerdict:
    """Replay master's encoder-and-stem loading on shapes (see the module docstring).

    ``weights``: the checkpoint's ``network_weights`` shapes; ``target``: the fine-tuning
    network's state_dict shapes; the ``target_key_to_*`` are that network's attributes.
    """
    adaptations: list[str] = []
    counts = {"encoder": 0, "stem": 0}
    keys = {"key_to_encoder": target_key_to_encoder, "key_to_stem": target_key_to_stem,
            "key_to_lpe": target_key_to_lpe}

    def verdict(failure: str | None) -> PretrainedTrainerVerdict:
        return PretrainedTrainerVerdict(failure is None, failure, counts["encoder"], counts["stem"],
                                        tuple(adaptations), keys)

    if target_key_to_encoder is None or target_key_to_stem is None:
        return verdict("AttributeError: the target network has no key_to_encoder/key_to_stem "
                       "(not a dynamic_network_architectures network)")
    pt_enc, pt_stem, in_proj = plan.key_to_encoder, plan.key_to_stem, plan.keys_to_in_proj
    pt_patch, new_patch = tuple(plan.pretrain_patch_size), tuple(target_patch_size)
    n_pt, n_new = plan.pretrain_input_channels, target_input_channels
    need_lpe = target_key_to_lpe is not None and list(pt_patch) != list(new_patch)
    lpe_in_encoder = target_key_to_lpe is not None and target_key_to_lpe.startswith(target_key_to_encoder)
    lpe_in_stem = target_key_to_lpe is not None and target_key_to_lpe.startswith(target_key_to_stem)
    encoder_module = _submodule(target, target_key_to_encoder)
    stem_module = _submodule(target, target_key_to_stem)
    try:
        encoder = {k: tuple(s) for k, s in weights.items() if k.startswith(pt_enc)}
        if pt_stem in weights:  # master's "stem_in_encoder" branch
            if n_new > n_pt:
                proj = in_proj[0] + ".weight" if in_proj else None
                if proj not in encoder:
                    raise _Fails(f"KeyError: {proj!r} (keys_to_in_proj) not among the encoder weights")
                repeated = _repeat(encoder[proj], (1, n_new, 1, 1))
                for k in in_proj:
                    encoder[k] = repeated
                adaptations.append(f"{', '.join(in_proj)}: repeated over {n_new} input channels, divided by {n_new}")
            new_encoder = {_strip_dot(k.replace(pt_enc, "")): s for k, s in encoder.items()}
            if need_lpe and lpe_in_encoder:
                if "down_projection.proj.weight" not in new_encoder:
                    raise _Fails("KeyError: 'down_projection.proj.weight'")
                adaptations.append(_resize_pos_embed(new_encoder, encoder_module, new_patch, pt_patch,
                                                     new_encoder["down_projection.proj.weight"][2:]))
            if "cls_token" in encoder:
                new_encoder = {k: s for k, s in encoder.items() if "cls_token" not in k}
                adaptations.append("cls_token dropped")
            counts["encoder"] = len(new_encoder)
            _strict_load(f"encoder ({target_key_to_encoder})", new_encoder, encoder_module)
        else:
            stem = {k: tuple(s) for k, s in weights.items() if k.startswith(pt_stem)}
            if n_new > n_pt:
                proj = in_proj[0] + ".weight" if in_proj else None
                if proj not in stem:
                    raise _Fails(f"KeyError: {proj!r} (keys_to_in_proj) not among the stem weights")
                repeated = _repeat(stem[proj], (1, n_new, 1, 1, 1))
                for k in in_proj:
                    stem[k + ".weight"] = repeated
                adaptations.append(
                    f"{', '.join(k + '.weight' for k in in_proj)}: repeated over {n_new} input channels, "
                    f"divided by {n_new}")
            new_encoder = {_strip_dot(k.replace(pt_enc, "")): s for k, s in encoder.items()}
            new_stem = {_strip_dot(k.replace(pt_stem, "")): s for k, s in stem.items()}
            if need_lpe and (lpe_in_stem or lpe_in_encoder):
                if "proj.weight" not in new_stem:
                    raise _Fails("KeyError: 'proj.weight' (the stem's patch embedding)")
                where, module = (new_stem, stem_module) if lpe_in_stem else (new_encoder, encoder_module)
                adaptations.append(_resize_pos_embed(where, module, new_patch, pt_patch, new_stem["proj.weight"][2:]))
            if "cls_token" in new_encoder:
                new_encoder = {k: s for k, s in new_encoder.items() if "cls_token" not in k}
                adaptations.append("cls_token dropped")
            counts["encoder"], counts["stem"] = len(new_encoder), len(new_stem)
            _strict_load(f"encoder ({target_key_to_encoder})", new_encoder, encoder_module)
            _strict_load(f"stem ({target_key_to_stem})", new_stem, stem_module)
        if not need_lpe and target_key_to_lpe is not None:
            found = [k for k in weights if plan.key_to_lpe is not None and k.startswith(plan.key_to_lpe)]
            if len(found) != 1:
                raise _Fails(f"AssertionError: expected one positional embedding under key_to_lpe "
                             f"{plan.key_to_lpe!r}, found {len(found)}")
            adaptations.append(f"{target_key_to_lpe} assigned from {found[0]} (no shape check)")
    except _Fails as e:
        return verdict(str(e))
    return verdict(None)
