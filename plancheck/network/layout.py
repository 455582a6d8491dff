"""The shape of a U-Net as a picture needs it: stages by resolution level, and the tensors of each.

A :class:`~plancheck.records.layout.NetworkLayout` is recorded at check time from the network plancheck built (on the
meta device) with nnU-Net's own code: the encoder's ``stages`` (and ``stem``), the decoder's
``stages``, ``transpconvs`` and ``seg_layers``, each with its features, kernel size, stride
and number of convolutions or residual blocks, and the state_dict keys of its parameters and
buffers. Renderers join these keys with the report's rows; nothing here parses key strings.

:func:`layout_of_architecture` gives the same record from a configuration's ``arch_kwargs``
alone (no torch), for ``plancheck diff``; its blocks carry no keys.

Levels count from 0 (full resolution, the top of the U) to ``levels - 1`` (the bottleneck).
An architecture without an nnU-Net encoder/decoder (``network.encoder.stages``,
``network.decoder.stages``) has no layout (``None``); the report's tables still hold every tensor.
"""

from __future__ import annotations

import typing as t

from plancheck.records.layout import KINDS, Block, CheckLayout, NetworkLayout

if t.TYPE_CHECKING:
    import torch

__all__ = ["KINDS", "Block", "CheckLayout", "NetworkLayout", "layout_of_architecture", "layout_of_module"]

Json = t.Any

# --------------------------------------------------------------------------- from a built network


def _convs(module: torch.nn.Module) -> list[t.Any]:
    from torch.nn.modules.conv import _ConvNd

    return [m for m in module.modules() if isinstance(m, _ConvNd)]


def _tuple(value: t.Any, dims: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value,) * dims
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        return None


def _keys(name: str, module: torch.nn.Module) -> tuple[str, ...]:
    return tuple(f"{name}.{k}" for k in module.state_dict(keep_vars=True))


def _repeats(module: torch.nn.Module) -> tuple[int, str]:
    """Residual blocks when the stage stacks them (``.blocks``), else convolutions (1x1 skip convs included)."""
    for sub in module.modules():
        blocks = getattr(sub, "blocks", None)
        if blocks is not None and hasattr(blocks, "__len__"):
            return len(blocks), "block"
    return len(_convs(module)), "conv"


def layout_of_module(network: torch.nn.Module, network_class: str = "") -> NetworkLayout | None:
    """The layout of a network built by nnU-Net (dynamic_network_architectures' U-Nets and their kin)."""
    import torch

    encoder = getattr(network, "encoder", None)
    decoder = getattr(network, "decoder", None)
    enc_stages = getattr(encoder, "stages", None)
    dec_stages = getattr(decoder, "stages", None)
    if not isinstance(enc_stages, torch.nn.Module) or not isinstance(dec_stages, torch.nn.Module):
        return None
    names = {id(m): n for n, m in network.named_modules()}
    enc_list = list(enc_stages.children())
    n = len(enc_list)
    convs = _convs(enc_stages)
    if not convs:
        return None
    dims = len(_tuple(convs[0].kernel_size, 1) or (1,))
    features = list(getattr(encoder, "output_channels", []) or [])
    kernels = list(getattr(encoder, "kernel_sizes", []) or [])
    strides = list(getattr(encoder, "strides", []) or [])
    blocks: list[Block] = []

    def block(kind: str, index: int, level: int, module: torch.nn.Module, *, features_: t.Any = None,
              kernel: t.Any = None, stride: t.Any = None, prefix: str) -> Block:
        mconvs = _convs(module)
        first = mconvs[0] if mconvs else None
        if features_ is None and mconvs:
            features_ = mconvs[-1].out_channels
        if kernel is None and first is not None:
            kernel = first.kernel_size
        if stride is None and first is not None and kind != "decoder":
            stride = first.stride
        repeats, unit = _repeats(module) if kind in ("stem", "encoder", "decoder") else (len(mconvs), "conv")
        name = names.get(id(module), "")
        return Block(
            id=f"{prefix}{index}" if kind != "stem" else "stem", kind=kind, index=index, level=level, module=name,
            features=None if features_ is None else int(features_), kernel=_tuple(kernel, dims),
            stride=_tuple(stride, dims), repeats=repeats, unit=unit, keys=_keys(name, module) if name else (),
        )

    stem = getattr(encoder, "stem", None)
    if isinstance(stem, torch.nn.Module):
        blocks.append(block("stem", 0, 0, stem, prefix="stem"))
    for i, stage in enumerate(enc_list):
        blocks.append(block("encoder", i, i, stage, prefix="enc",
                            features_=features[i] if i < len(features) else None,
                            kernel=kernels[i] if i < len(kernels) else None,
                            stride=strides[i] if i < len(strides) else None))
    dec_list = list(dec_stages.children())
    transp = list(getattr(decoder, "transpconvs", None) or [])
    heads = list(getattr(decoder, "seg_layers", None) or [])
    for s, stage in enumerate(dec_list):
        level = max(0, n - 2 - s)
        if s < len(transp):
            blocks.append(block("transpconv", s, level + 1, transp[s], prefix="up"))
        blocks.append(block("decoder", s, level, stage, prefix="dec"))
    for s, head in enumerate(heads):
        blocks.append(block("head", s, max(0, n - 2 - s), head, prefix="head"))
    return NetworkLayout(network_class=network_class or type(network).__name__, dims=dims, levels=n,
                         blocks=tuple(blocks))


# --------------------------------------------------------------------------- from arch_kwargs (no torch)


def _vector(value: t.Any, dims: int) -> tuple[int, ...] | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (int(value),) * dims
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
        return tuple(int(v) for v in value)
    return None


def _at(seq: t.Any, i: int) -> t.Any:
    if isinstance(seq, (list, tuple)):
        return seq[i] if i < len(seq) else None
    return seq  # a scalar applies to every stage


def layout_of_architecture(network_class: str, arch_kwargs: t.Mapping[str, Json]) -> NetworkLayout | None:
    """What the plans say the U-Net looks like: ``n_stages``, ``features_per_stage``, ``kernel_sizes``, ...

    Used where no network is built (``plancheck diff`` never imports torch). None when the
    arch_kwargs do not describe an nnU-Net U-Net.
    """
    n = arch_kwargs.get("n_stages")
    kernels = arch_kwargs.get("kernel_sizes")
    if not isinstance(n, int) or n < 1 or not isinstance(kernels, list) or not kernels:
        return None
    first = kernels[0]
    dims = len(first) if isinstance(first, list) else 1
    features = arch_kwargs.get("features_per_stage")
    strides = arch_kwargs.get("strides")
    unit, repeats = ("block", arch_kwargs["n_blocks_per_stage"]) if "n_blocks_per_stage" in arch_kwargs else (
        "conv", arch_kwargs.get("n_conv_per_stage"))
    dec_repeats = arch_kwargs.get("n_conv_per_stage_decoder")
    blocks: list[Block] = []

    def num(v: t.Any) -> int | None:
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    for i in range(n):
        blocks.append(Block(id=f"enc{i}", kind="encoder", index=i, level=i, module="",
                            features=num(_at(features, i)), kernel=_vector(_at(kernels, i), dims),
                            stride=_vector(_at(strides, i), dims), repeats=num(_at(repeats, i)), unit=unit))
    for s in range(n - 1):
        level = n - 2 - s
        blocks.append(Block(id=f"up{s}", kind="transpconv", index=s, level=level + 1, module="",
                            features=num(_at(features, level)), kernel=_vector(_at(strides, level + 1), dims),
                            stride=_vector(_at(strides, level + 1), dims), repeats=1))
        blocks.append(Block(id=f"dec{s}", kind="decoder", index=s, level=level, module="",
                            features=num(_at(features, level)), kernel=_vector(_at(kernels, level), dims),
                            stride=None, repeats=num(_at(dec_repeats, s)), unit="conv"))
    return NetworkLayout(network_class=network_class.rsplit(".", 1)[-1], dims=dims, levels=n, blocks=tuple(blocks),
                         from_network=False)
