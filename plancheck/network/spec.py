"""Turn plans + dataset.json into the exact inputs of nnU-Net's network constructor.

Everything here is decided by nnU-Net's own code: ``PlansManager`` and
``ConfigurationManager`` resolve the configuration (``inherits_from``, the old format),
``determine_num_input_channels`` gives the input channels (the cascade included), and
the label manager gives the number of segmentation heads. plancheck adds only the
safety step: each class path is resolved by :mod:`plancheck.network.classpath` before nnU-Net's
``pydoc.locate`` would import it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import typing as t
from dataclasses import dataclass, field, replace

from plancheck._nnunet import captured_warnings, quiet
from plancheck.network.classpath import resolve_class
from plancheck.errors import InputError, PlansError
from plancheck.inputs.plans import DatasetJson, PlansFile, ResolvedConfiguration, resolve_configuration

if t.TYPE_CHECKING:
    from plancheck.network.trainers import TrainerRef

__all__ = ["NetworkSpec", "Side", "TrainerContext", "prepare_side"]

Json = t.Any

#: Output channels used to build a network whose segmentation head is unknown (no dataset.json).
#: The head is skipped by nnU-Net's loader, so its size cannot change the verdict.
PLACEHOLDER_HEADS = 2


@dataclass(frozen=True)
class TrainerContext:
    """What a trainer's ``build_network_architecture`` reads besides the spec: the plans and the configuration.

    build.py turns it back into nnU-Net's PlansManager/ConfigurationManager; the spec's
    class path and arch_kwargs replace the configuration's ``architecture``, so that
    attribution's interventions reach trainer-built networks too.
    """

    plans_json: str
    configuration: str

    def digest(self) -> str:
        return hashlib.sha1(f"{self.configuration}\0{self.plans_json}".encode()).hexdigest()


@dataclass(frozen=True)
class NetworkSpec:
    """Everything ``get_network_from_plans`` takes, with class paths already vetted.

    ``trainer`` is the class path of a trainer whose ``build_network_architecture``
    builds the network (None: get_network_from_plans, i.e. nnUNetTrainer's network);
    ``trainer_context`` then holds the plans it is given.
    """

    class_path: str
    arch_kwargs: dict[str, Json]
    requires_import: tuple[str, ...]
    input_channels: int
    output_channels: int
    deep_supervision: bool = True
    trainer: str | None = None
    declared_class_path: str = ""
    trainer_context: TrainerContext | None = None

    @property
    def class_name(self) -> str:
        return self.class_path.rsplit(".", 1)[-1]

    def key(self) -> str:
        """A stable identity for caching built networks."""
        return json.dumps(
            [self.class_path, self.arch_kwargs, self.requires_import, self.input_channels, self.output_channels,
             self.deep_supervision, self.trainer,
             None if self.trainer is None or self.trainer_context is None else self.trainer_context.digest()],
            sort_keys=True,
            default=str,
        )

    def with_arch_kwargs(self, arch_kwargs: dict[str, Json]) -> NetworkSpec:
        return replace(self, arch_kwargs=arch_kwargs)


@dataclass(frozen=True)
class Side:
    """One side of a check (the source or the target), ready to build."""

    role: str
    plans: PlansFile
    configuration: ResolvedConfiguration
    dataset_json: DatasetJson | None
    spec: NetworkSpec
    input_channels_from: str
    heads_known: bool
    notes: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        return self.plans.label


def prepare_side(
    role: str,
    plans: PlansFile,
    configuration: str,
    dataset_json: DatasetJson | None,
    *,
    allow: t.Iterable[str] = (),
    trainer: TrainerRef | None = None,
) -> Side:
    """Resolve one side with nnU-Net's own plans handling and channel logic.

    ``trainer`` (from :func:`plancheck.network.trainers.resolve_trainer`) builds the network when
    it overrides ``build_network_architecture``; otherwise the plans-only build is exact.
    """
    resolved = resolve_configuration(plans, configuration)  # clear errors for malformed plans first
    notes: list[str] = []
    with quiet(), captured_warnings() as nnunet_warnings:
        try:
            from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
            from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

            manager = PlansManager(copy.deepcopy(plans.data))
            cfg = manager.get_configuration(configuration)
            arch_class = cfg.network_arch_class_name
            arch_kwargs = copy.deepcopy(cfg.network_arch_init_kwargs)
            requires_import = tuple(cfg.network_arch_init_kwargs_req_import)
            if dataset_json is not None:
                input_channels = determine_num_input_channels(manager, cfg, dataset_json.data)
                output_channels = manager.get_label_manager(dataset_json.data).num_segmentation_heads
                channel_key = dataset_json.channel_key
                input_from = f"dataset.json:{channel_key}"
                if cfg.previous_stage_name is not None:
                    input_from += " + foreground labels of the previous stage (cascade)"
            else:
                if cfg.previous_stage_name is not None:
                    raise InputError(
                        f"configuration '{configuration}' is a cascade stage: its input channels include the "
                        "previous stage's foreground labels, which only a dataset.json gives (pass "
                        f"--{role}-dataset-json)",
                        path=plans.label,
                    )
                input_channels = len(cfg.normalization_schemes)
                output_channels = PLACEHOLDER_HEADS
                input_from = "normalization_schemes (no dataset.json)"
                notes.append(
                    f"no dataset.json for the {role}: {input_channels} input channel(s) taken from "
                    "normalization_schemes; segmentation head unknown (nnU-Net skips it anyway)"
                )
        except (InputError, PlansError):
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError, AssertionError) as e:
            detail = f"missing key {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
            raise PlansError(
                f"nnU-Net cannot read configuration '{configuration}': {detail}".splitlines()[0],
                path=plans.label if dataset_json is None else f"{plans.label} (with {dataset_json.label})",
            ) from e
    if any("old nnU-Net plans format" in w for w in nnunet_warnings):
        notes.append("old plans format: nnU-Net converted it to the current format")
    resolved_class = resolve_class(
        arch_class, field="network_class_name", source=plans.label, allow=allow
    )
    if resolved_class.moved:
        notes.append(f"class {resolved_class.declared} moved; resolved to {resolved_class.canonical}")
    for key in requires_import:
        value = arch_kwargs.get(key)
        if value is None:
            continue
        arch_kwargs[key] = resolve_class(value, field=f"arch_kwargs.{key}", source=plans.label, allow=allow).canonical
    spec = NetworkSpec(
        class_path=resolved_class.canonical,
        arch_kwargs=arch_kwargs,
        requires_import=requires_import,
        input_channels=int(input_channels),
        output_channels=int(output_channels),
        declared_class_path=resolved_class.declared,
    )
    if trainer is not None and trainer.build_path is not None:
        spec = replace(
            spec,
            trainer=trainer.build_path,
            trainer_context=TrainerContext(json.dumps(plans.data, sort_keys=True, default=str), configuration),
        )
    return Side(
        role=role,
        plans=plans,
        configuration=resolved,
        dataset_json=dataset_json,
        spec=spec,
        input_channels_from=input_from,
        heads_known=dataset_json is not None,
        notes=tuple(notes),
    )
