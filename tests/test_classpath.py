"""Class paths from plans: resolved only inside the allowed packages, moved classes found without side imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import FIXTURES
from plancheck.network.classpath import find_defining_module, resolve_class
from plancheck.errors import ClassRefused


def test_moved_class_resolves_without_importing_unrelated_modules():
    # Old plans name ...architectures.residual_unet.ResidualEncoderUNet; the class now lives in ...unet.
    # nnU-Net's own fallback imports every architecture module (timm, torchvision with it); plancheck must not.
    legacy = FIXTURES / "Legacy901ResEnc" / "nnUNetResEncUNetMPlans.json"
    code = f"""
import sys
from plancheck import check
report = check({str(legacy)!r}, {str(legacy)!r})
assert report.compatible
assert report.source.network_class == "ResidualEncoderUNet"
assert any("moved" in n for n in report.source.notes), report.source.notes
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("timm", "torchvision")
             or m.startswith(("dynamic_network_architectures.architectures.primus",
                              "dynamic_network_architectures.architectures.dinov2_eva")))
print(bad)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_find_defining_module_reads_sources():
    assert find_defining_module("dynamic_network_architectures.architectures", "ResidualEncoderUNet") == (
        "dynamic_network_architectures.architectures.unet"
    )
    assert find_defining_module("dynamic_network_architectures.architectures", "NoSuchNet") is None


@pytest.mark.parametrize(
    "path",
    ["torch.nn.LeakyReLU", "torch.nn.modules.conv.Conv3d", "torch.nn.modules.instancenorm.InstanceNorm2d",
     "dynamic_network_architectures.architectures.unet.PlainConvUNet"],
)
def test_allowed_paths_resolve(path):
    assert resolve_class(path, field="f", source="s").obj.__name__ == path.rsplit(".", 1)[1]


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("os.system", "refusing to import"),
        ("builtins.eval", "refusing to import"),
        ("torch.load", "refusing to import"),  # torch itself is not torch.nn
        ("torch.nnx.Foo", "refusing to import"),  # a prefix that merely starts like torch.nn
        ("torch.nn.functional.relu", "is not a class"),
        ("nnunetv2.paths.os.system", "is not a class"),
        ("not a path", "must be a dotted class path"),
        ("dynamic_network_architectures.architectures.unet.NoSuchUNet", "not found"),
    ],
)
def test_refused_paths(path, needle):
    with pytest.raises(ClassRefused, match=needle):
        resolve_class(path, field="network_class_name", source="plans.json")


def test_allow_import_extends_the_allowed_packages():
    with pytest.raises(ClassRefused):
        resolve_class("custom_architectures.RenamedUNet", field="f", source="s")
    resolved = resolve_class("custom_architectures.RenamedUNet", field="f", source="s",
                             allow=("custom_architectures",))
    assert resolved.obj.__name__ == "RenamedUNet"
