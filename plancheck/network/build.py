"""Build networks on PyTorch's meta device and read their state_dict shapes.

The network is built by nnU-Net's ``get_network_from_plans``, which is what
``nnUNetTrainer.build_network_architecture`` calls (deep supervision on), under
``torch.device("meta")``: parameters get shapes but no memory, and ``allow_init=False``
skips the weight initialisation, which does not change any shape. A spec whose
``trainer`` is set (a trainer that overrides ``build_network_architecture``) is built
through that trainer instead, from nnU-Net's PlansManager/ConfigurationManager made from
the plans the spec carries. This is the only module (with :mod:`plancheck.network.trainers`)
that imports torch; it does so lazily.
"""

from __future__ import annotations

import typing as t

from plancheck._nnunet import captured_warnings, quiet
from plancheck.errors import BuildError, PlancheckError
from plancheck.inputs.shapes import ShapeTable
from plancheck.network.layout import layout_of_module
from plancheck.network.spec import NetworkSpec
from plancheck.records.layout import CheckLayout, NetworkLayout

if t.TYPE_CHECKING:
    import torch

__all__ = ["build_meta_network", "build_network", "check_layout", "network_layout", "network_shapes",
           "shapes_of_module"]


def build_meta_network(spec: NetworkSpec, *, source: str = "") -> torch.nn.Module:
    """Construct the network exactly as nnU-Net's trainer would, on the meta device."""
    return build_network(spec, source=source, device="meta")


def build_network(spec: NetworkSpec, *, source: str = "", device: str = "meta") -> torch.nn.Module:
    """Construct the network exactly as nnU-Net's trainer would, on ``device``.

    On the meta device nothing is initialised (``allow_init=False``: shapes only). On a real
    device the network gets nnU-Net's own initialisation, as ``build_network_architecture``
    gives it (``allow_init=True``), drawing from torch's global random generator.
    """
    import torch

    if spec.trainer is not None:
        return _build_through_trainer(spec, source=source, device=device)
    with quiet(), captured_warnings():
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

        try:
            with torch.device(device):
                return get_network_from_plans(
                    spec.class_path,
                    spec.arch_kwargs,
                    list(spec.requires_import),
                    spec.input_channels,
                    spec.output_channels,
                    allow_init=device != "meta",
                    deep_supervision=spec.deep_supervision,
                )
        except Exception as e:  # constructor errors of arbitrary architectures
            message = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise BuildError(
                f"nnU-Net cannot build {spec.class_name} from these plans: {type(e).__name__}: {message}",
                path=source or None,
            ) from e


def _build_through_trainer(spec: NetworkSpec, *, source: str, device: str = "meta") -> torch.nn.Module:
    """``Trainer.build_network_architecture`` with the spec's architecture, on the meta device."""
    import copy
    import json

    import torch

    from plancheck.network.trainers import build_with_trainer, load_trainer_class

    assert spec.trainer is not None
    context = spec.trainer_context
    if context is None:
        raise BuildError(f"trainer {spec.trainer} needs the plans it builds from", path=source or None)
    trainer_cls = load_trainer_class(spec.trainer)
    trainer_name = spec.trainer.rsplit(".", 1)[-1]
    with quiet(), captured_warnings():
        try:
            from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

            plans_manager = PlansManager(json.loads(context.plans_json))
            configuration_manager = plans_manager.get_configuration(context.configuration)
            configuration_manager.configuration["architecture"] = {
                "network_class_name": spec.class_path,
                "arch_kwargs": copy.deepcopy(spec.arch_kwargs),
                "_kw_requires_import": list(spec.requires_import),
            }
            network = build_with_trainer(
                trainer_cls,
                plans_manager,
                configuration_manager,
                spec.input_channels,
                spec.output_channels,
                spec.deep_supervision,
                device=device,
            )
        except BuildError as e:
            raise BuildError(e.message, path=source or None) from e
        except Exception as e:  # arbitrary trainer code
            message = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise BuildError(
                f"{trainer_name}.build_network_architecture cannot build {spec.class_name} from these plans: "
                f"{type(e).__name__}: {message}",
                path=source or None,
            ) from e
    if not isinstance(network, torch.nn.Module):
        raise BuildError(
            f"{trainer_name}.build_network_architecture returned a {type(network).__name__}, not a torch.nn.Module",
            path=source or None,
        )
    return network


def shapes_of_module(module: torch.nn.Module, origin: str = "meta network") -> ShapeTable:
    """The state_dict's shapes; keys holding the same tensor object are aliases."""
    state = module.state_dict(keep_vars=True)
    return ShapeTable.from_items(((k, tuple(v.shape), id(v)) for k, v in state.items()), origin=origin)


_CACHE: dict[str, ShapeTable] = {}
_CACHE_SIZE = 256
#: The layouts (:mod:`plancheck.network.layout`) of the networks a check draws, taken from the same build as their
#: shapes.
_LAYOUTS: dict[str, NetworkLayout | None] = {}
_LAYOUTS_SIZE = 64


def network_shapes(spec: NetworkSpec, *, source: str = "", layout: bool = False) -> ShapeTable:
    """Shapes of the network ``spec`` describes (cached: attribution and matrix rebuild often).

    ``layout=True`` also records the network's layout from the same build (for
    :func:`network_layout`); attribution's many rebuilds do without it.
    """
    key = spec.key()
    table = _CACHE.get(key)
    if table is None or (layout and key not in _LAYOUTS):
        module = build_meta_network(spec, source=source)
        if table is None:
            table = shapes_of_module(module)
            if len(_CACHE) >= _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = table
        if layout:
            if len(_LAYOUTS) >= _LAYOUTS_SIZE:
                _LAYOUTS.pop(next(iter(_LAYOUTS)))
            _LAYOUTS[key] = layout_of_module(module, spec.class_name)
    return table


def network_layout(spec: NetworkSpec, *, source: str = "") -> NetworkLayout | None:
    """The layout of the network ``spec`` describes (None: no U-Net to draw), from the same meta build as its
    shapes (both cached)."""
    network_shapes(spec, source=source, layout=True)
    return _LAYOUTS[spec.key()]


def check_layout(source: t.Any, target: t.Any) -> CheckLayout:
    """Both sides' layouts (:class:`plancheck.network.spec.Side`); a side that cannot be drawn gets None, never an
    error."""

    def one(side: t.Any) -> NetworkLayout | None:
        try:
            return network_layout(side.spec, source=side.label)
        except PlancheckError:
            return None

    return CheckLayout(one(source), one(target))
