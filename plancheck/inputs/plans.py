"""Load plans.json and dataset.json files, and resolve configurations as plain JSON.

This module never imports torch or nnU-Net, so that ``plancheck diff`` stays fast. It
reads files, validates their shape with one-line errors that name the file, and resolves
a configuration the way nnU-Net's ``PlansManager`` does (``inherits_from``, and the old
plans format that ``ConfigurationManager`` converts). The test-suite checks the result
against nnU-Net's own ``PlansManager`` for every fixture and every real plans file, so
nnU-Net stays the authority; what this module adds is *where* each value came from,
which nnU-Net does not keep: the configuration that defines an inherited key, and the
old field name that a converted value was read from.
"""

from __future__ import annotations

import copy
import json
import os
import typing as t
from dataclasses import dataclass, field

from plancheck.errors import ConfigurationNotFound, PlansError

__all__ = [
    "LEGACY_ARCHITECTURE_KEYS",
    "DatasetJson",
    "PlansFile",
    "ResolvedConfiguration",
    "find_dataset_json",
    "load_dataset_json",
    "load_plans",
    "resolve_configuration",
]

Json = t.Any
PathLike = t.Union[str, "os.PathLike[str]"]

#: Keys of an old-format configuration that ``ConfigurationManager`` turns into ``architecture``.
LEGACY_ARCHITECTURE_KEYS = (
    "UNet_class_name",
    "UNet_base_num_features",
    "n_conv_per_stage_encoder",
    "n_conv_per_stage_decoder",
    "num_pool_per_axis",
    "pool_op_kernel_sizes",
    "conv_kernel_sizes",
    "unet_max_num_features",
)

# Old class names nnU-Net's converter understands, and the class paths it writes for them.
_LEGACY_CLASS_PATHS = {
    "PlainConvUNet": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "ResidualEncoderUNet": "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet",
}


def _read_json(path: PathLike, what: str) -> Json:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            return json.load(fh)
    except FileNotFoundError as e:
        raise PlansError(f"{what} not found", path=path) from e
    except IsADirectoryError as e:
        raise PlansError(f"is a directory, expected a {what}", path=path) from e
    except UnicodeDecodeError as e:
        raise PlansError(f"is not a text file ({what} expected)", path=path) from e
    except json.JSONDecodeError as e:
        raise PlansError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", path=path) from e
    except OSError as e:
        raise PlansError(f"cannot read {what}: {e.strerror or e}", path=path) from e


@dataclass(frozen=True)
class PlansFile:
    """A plans.json as loaded: its data, and the name used in messages."""

    data: dict[str, Json]
    path: str | None = None

    @property
    def label(self) -> str:
        return self.path or "<plans dict>"

    @property
    def configurations(self) -> list[str]:
        return list(self.data["configurations"])

    @property
    def dataset_name(self) -> str | None:
        return self.data.get("dataset_name")

    @property
    def plans_name(self) -> str | None:
        return self.data.get("plans_name")


@dataclass(frozen=True)
class DatasetJson:
    """A dataset.json as loaded (or ``None`` data when none was given or found)."""

    data: dict[str, Json]
    path: str | None = None

    @property
    def label(self) -> str:
        return self.path or "<dataset.json dict>"

    @property
    def channel_key(self) -> str:
        return "modality" if "modality" in self.data else "channel_names"


def load_plans(plans: PathLike | dict[str, Json] | PlansFile) -> PlansFile:
    """Read and validate a plans.json given as a path, a dict, or an already loaded file."""
    if isinstance(plans, PlansFile):
        return plans
    if isinstance(plans, dict):
        data, path = plans, None
    else:
        path = os.fspath(plans)
        data = _read_json(path, "plans file")
    _validate_plans(data, path)
    return PlansFile(data=data, path=path)


def _validate_plans(data: Json, path: str | None) -> None:
    where = path or "<plans dict>"
    if not isinstance(data, dict):
        raise PlansError(f"not an nnU-Net plans file: top level is a JSON {_kind(data)}, expected an object",
                         path=where)
    configs = data.get("configurations")
    if configs is None:
        raise PlansError("not an nnU-Net plans file: no 'configurations' key", path=where)
    if not isinstance(configs, dict) or not configs:
        raise PlansError("'configurations' must be a non-empty object", path=where)
    for name, cfg in configs.items():
        if not isinstance(cfg, dict):
            raise PlansError(f"configuration '{name}' is a JSON {_kind(cfg)}, expected an object", path=where)


def _kind(value: Json) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def load_dataset_json(dataset_json: PathLike | dict[str, Json] | DatasetJson) -> DatasetJson:
    """Read and validate a dataset.json (channels and labels are what plancheck needs)."""
    if isinstance(dataset_json, DatasetJson):
        return dataset_json
    if isinstance(dataset_json, dict):
        data, path = dataset_json, None
    else:
        path = os.fspath(dataset_json)
        data = _read_json(path, "dataset.json")
    where = path or "<dataset.json dict>"
    if not isinstance(data, dict):
        raise PlansError(f"not a dataset.json: top level is a JSON {_kind(data)}, expected an object", path=where)
    channels = data.get("channel_names", data.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise PlansError("dataset.json has no 'channel_names' (or old 'modality') object", path=where)
    labels = data.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise PlansError("dataset.json has no 'labels' object", path=where)
    return DatasetJson(data=data, path=path)


def find_dataset_json(plans_path: str | None) -> str | None:
    """The dataset.json that sits next to a plans file, as nnU-Net lays them out."""
    if plans_path is None:
        return None
    candidate = os.path.join(os.path.dirname(os.path.abspath(plans_path)), "dataset.json")
    return candidate if os.path.isfile(candidate) else None


@dataclass(frozen=True)
class ResolvedConfiguration:
    """One configuration with ``inherits_from`` applied and the old format converted.

    ``data`` equals ``PlansManager(plans).get_configuration(name).configuration``.
    ``defined_in`` maps each top-level key of ``data`` to the configuration that sets it
    (for keys that were converted from the old format, the configuration that held the
    old fields). ``legacy_fields`` maps a converted ``arch_kwargs`` field to the old
    field it came from (``strides`` -> ``pool_op_kernel_sizes``).
    """

    name: str
    data: dict[str, Json]
    defined_in: dict[str, str] = field(default_factory=dict)
    legacy_fields: dict[str, str] = field(default_factory=dict)
    chain: tuple[str, ...] = ()

    @property
    def is_legacy(self) -> bool:
        return bool(self.legacy_fields)

    @property
    def architecture(self) -> dict[str, Json]:
        return self.data["architecture"]

    @property
    def arch_kwargs(self) -> dict[str, Json]:
        return self.data["architecture"]["arch_kwargs"]

    @property
    def is_cascade(self) -> bool:
        return self.data.get("previous_stage") is not None

    @property
    def dimension(self) -> int | None:
        patch = self.data.get("patch_size")
        return len(patch) if isinstance(patch, list) else None


def resolve_configuration(plans: PlansFile, name: str) -> ResolvedConfiguration:
    """Resolve ``name`` as nnU-Net's PlansManager does, keeping the provenance of each key."""
    configs = plans.data["configurations"]
    if name not in configs:
        raise ConfigurationNotFound(
            f"no configuration '{name}'; available: {', '.join(configs)}", path=plans.label
        )
    # Walk up the inheritance chain exactly like PlansManager._internal_resolve_configuration_inheritance:
    # the child's keys update a deep copy of the resolved parent (a shallow, top-level update).
    chain: list[str] = []
    current = name
    while True:
        if current in chain:
            raise PlansError(
                f"configuration '{name}' has circular 'inherits_from': {' -> '.join([*chain, current])}",
                path=plans.label,
            )
        if current not in configs:
            raise PlansError(
                f"configuration '{chain[-1]}' inherits from '{current}', which does not exist", path=plans.label
            )
        chain.append(current)
        parent = configs[current].get("inherits_from")
        if parent is None:
            break
        current = parent
    data: dict[str, Json] = {}
    defined_in: dict[str, str] = {}
    for config_name in reversed(chain):
        update = copy.deepcopy(configs[config_name])
        data.update(update)
        defined_in.update({key: config_name for key in update})
    legacy: dict[str, str] = {}
    if "architecture" not in data:
        data, legacy = _convert_legacy(data, plans.label, name)
        owner = next((defined_in[k] for k in LEGACY_ARCHITECTURE_KEYS if k in defined_in), name)
        defined_in = {k: v for k, v in defined_in.items() if k in data}
        defined_in["architecture"] = owner
    _validate_architecture(data, plans.label, name)
    return ResolvedConfiguration(name=name, data=data, defined_in=defined_in, legacy_fields=legacy, chain=tuple(chain))


def _convert_legacy(cfg: dict[str, Json], where: str, name: str) -> tuple[dict[str, Json], dict[str, str]]:
    """The pure-JSON twin of ConfigurationManager's old-format conversion (tested against it)."""
    missing = [k for k in LEGACY_ARCHITECTURE_KEYS if k not in cfg]
    if "UNet_class_name" not in cfg:
        raise PlansError(
            f"configuration '{name}' has neither 'architecture' nor the old 'UNet_class_name'", path=where
        )
    if missing:
        raise PlansError(f"old-format configuration '{name}' lacks {', '.join(missing)}", path=where)
    class_name = cfg["UNet_class_name"]
    if class_name not in _LEGACY_CLASS_PATHS:
        raise PlansError(
            f"old-format configuration '{name}' names UNet_class_name '{class_name}'; nnU-Net converts only "
            "PlainConvUNet and ResidualEncoderUNet",
            path=where,
        )
    patch = cfg.get("patch_size")
    if not isinstance(patch, list) or len(patch) not in (1, 2, 3):
        raise PlansError(f"old-format configuration '{name}' has no valid 'patch_size'", path=where)
    dim = len(patch)
    n_stages = len(cfg["n_conv_per_stage_encoder"])
    blocks_key = "n_conv_per_stage" if class_name == "PlainConvUNet" else "n_blocks_per_stage"
    arch_kwargs = {
        "n_stages": n_stages,
        "features_per_stage": [
            min(cfg["UNet_base_num_features"] * 2**i, cfg["unet_max_num_features"]) for i in range(n_stages)
        ],
        "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
        "kernel_sizes": copy.deepcopy(cfg["conv_kernel_sizes"]),
        "strides": copy.deepcopy(cfg["pool_op_kernel_sizes"]),
        blocks_key: copy.deepcopy(cfg["n_conv_per_stage_encoder"]),
        "n_conv_per_stage_decoder": copy.deepcopy(cfg["n_conv_per_stage_decoder"]),
        "conv_bias": True,
        "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    converted = {k: v for k, v in cfg.items() if k not in LEGACY_ARCHITECTURE_KEYS}
    converted["architecture"] = {
        "network_class_name": _LEGACY_CLASS_PATHS[class_name],
        "arch_kwargs": arch_kwargs,
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    legacy = {
        "network_class_name": "UNet_class_name",
        "n_stages": "n_conv_per_stage_encoder",
        "features_per_stage": "UNet_base_num_features",
        "conv_op": "patch_size",
        "norm_op": "patch_size",
        "kernel_sizes": "conv_kernel_sizes",
        "strides": "pool_op_kernel_sizes",
        blocks_key: "n_conv_per_stage_encoder",
        "n_conv_per_stage_decoder": "n_conv_per_stage_decoder",
    }
    return converted, legacy


def _validate_architecture(cfg: dict[str, Json], where: str, name: str) -> None:
    arch = cfg.get("architecture")
    if not isinstance(arch, dict):
        raise PlansError(f"configuration '{name}': 'architecture' must be an object", path=where)
    cls = arch.get("network_class_name")
    if not isinstance(cls, str) or not cls:
        raise PlansError(f"configuration '{name}': architecture.network_class_name must be a string", path=where)
    kwargs = arch.get("arch_kwargs")
    if not isinstance(kwargs, dict):
        raise PlansError(f"configuration '{name}': architecture.arch_kwargs must be an object", path=where)
    req = arch.get("_kw_requires_import", [])
    if not isinstance(req, list) or not all(isinstance(r, str) for r in req):
        raise PlansError(
            f"configuration '{name}': architecture._kw_requires_import must be a list of names", path=where
        )
    for key in req:
        if key not in kwargs:
            raise PlansError(
                f"configuration '{name}': _kw_requires_import names '{key}', which arch_kwargs lacks", path=where
            )
