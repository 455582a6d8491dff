"""plancheck's pure-JSON configuration resolution equals nnU-Net's PlansManager, key for key."""

from __future__ import annotations

import copy
import json
import pathlib
import warnings

import pytest

from conftest import FIXTURES, fixture_id, fixture_plans, load
from plancheck.errors import ConfigurationNotFound, PlansError
from plancheck.inputs.plans import load_dataset_json, load_plans, resolve_configuration


def _nnunet_configuration(plans: dict, name: str) -> dict:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PlansManager(copy.deepcopy(plans)).get_configuration(name).configuration


def _cases():
    return [(p, c) for p in fixture_plans() for c in load(p)["configurations"]]


@pytest.mark.parametrize(("path", "name"), _cases(), ids=lambda v: fixture_id(v) if isinstance(v, pathlib.Path) else v)
def test_resolution_equals_plans_manager(path, name):
    plans = load(path)
    ours = resolve_configuration(load_plans(path), name)
    assert ours.data == _nnunet_configuration(plans, name)
    assert set(ours.defined_in) == set(ours.data)


def test_fixtures_cover_old_format_and_inheritance():
    legacy = [p for p in fixture_plans() if any("UNet_class_name" in c for c in load(p)["configurations"].values())]
    inheriting = [p for p in fixture_plans() if any("inherits_from" in c for c in load(p)["configurations"].values())]
    assert legacy and inheriting


def test_inherited_keys_are_named_where_defined():
    path = FIXTURES / "Inherits901" / "nnUNetPlans.json"
    plans = load_plans(path)
    for name, cfg in load(path)["configurations"].items():
        if "inherits_from" not in cfg:
            continue
        resolved = resolve_configuration(plans, name)
        for key in cfg:
            assert resolved.defined_in[key] == name
        parent_keys = set(resolved.data) - set(cfg)
        assert parent_keys and all(resolved.defined_in[k] != name for k in parent_keys)
        assert resolved.chain[0] == name and resolved.chain[-1] == "3d_fullres"


def test_legacy_fields_map_back_to_old_names():
    path = next(p for p in fixture_plans() if p.parent.name.startswith("Legacy"))
    plans = load_plans(path)
    name = next(iter(plans.configurations))
    resolved = resolve_configuration(plans, name)
    assert resolved.is_legacy
    assert resolved.legacy_fields["strides"] == "pool_op_kernel_sizes"
    assert resolved.legacy_fields["kernel_sizes"] == "conv_kernel_sizes"


def test_dicts_are_accepted_and_not_mutated():
    path = fixture_plans()[0]
    data = load(path)
    snapshot = json.dumps(data, sort_keys=True)
    for name in data["configurations"]:
        resolve_configuration(load_plans(data), name)
    assert json.dumps(data, sort_keys=True) == snapshot


def test_unknown_configuration_lists_available():
    plans = load_plans(fixture_plans()[0])
    with pytest.raises(ConfigurationNotFound, match="available: "):
        resolve_configuration(plans, "4d_ultra")


def test_missing_parent():
    data = load(fixture_plans()[0])
    data["configurations"]["orphan"] = {"inherits_from": "ghost"}
    with pytest.raises(PlansError, match="inherits from 'ghost', which does not exist"):
        resolve_configuration(load_plans(data), "orphan")


def test_old_format_unknown_class_is_refused_like_nnunet():
    path = next(p for p in fixture_plans() if p.parent.name.startswith("Legacy"))
    data = load(path)
    name = next(iter(data["configurations"]))
    data["configurations"][name]["UNet_class_name"] = "neUNet"
    with pytest.raises(PlansError, match="converts only PlainConvUNet and ResidualEncoderUNet"):
        resolve_configuration(load_plans(data), name)
    with pytest.raises(RuntimeError, match="Unknown architecture neUNet"):
        _nnunet_configuration(data, name)


def test_dataset_json_old_modality_key():
    dj = load_dataset_json({"modality": {"0": "CT"}, "labels": {"background": 0, "x": 1}})
    assert dj.channel_key == "modality"
