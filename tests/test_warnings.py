"""Warnings of `plancheck check`: what loads but sees other data (issue 9: channels, intensity statistics)."""

from __future__ import annotations


from conftest import fixture
from plancheck import check

D901 = "Dataset901_CTIsotropic"
D902 = "Dataset902_CTAnisotropic"
D905 = "Dataset905_CardiacCine"
D906 = "Dataset906_SmallImages"
D907 = "Dataset907_CTIsotropicOther"


def _statistics(report) -> list[str]:
    return [w for w in report.warnings if "intensity statistics" in w]


def test_normalisation_statistics_read_are_nnunets_own():
    """Which statistics a scheme reads comes from running nnU-Net's own normalisation class."""
    from plancheck.network.normalization import statistics_read

    assert statistics_read("CTNormalization") == {"mean", "std", "percentile_00_5", "percentile_99_5"}
    assert statistics_read("ZScoreNormalization") == frozenset()
    assert statistics_read("NoNormalization") == frozenset()
    assert statistics_read("MyLabsNormalization") is None
    assert statistics_read("ImageNormalization") is None  # abstract: not a scheme


def test_zscore_channels_get_no_intensity_statistics_warning():
    # both sides normalise with ZScoreNormalization, which never reads the statistics
    report = check(fixture(D905), fixture(D906), "2d")
    assert any("differ" in w for w in report.warnings)  # the statistics differ, and so does the spacing
    assert _statistics(report) == []
    assert not any("CTNormalization" in w for w in report.warnings)


def test_ct_channels_are_worded_from_their_scheme():
    report = check(fixture(D901), fixture(D902))
    (warning,) = _statistics(report)
    assert "channel 0" in warning
    assert "source and target normalise it with CTNormalization, which reads" in warning
    for name in ("mean", "std", "percentile_00_5", "percentile_99_5"):
        assert name in warning
    assert "median" not in warning  # differs, but no scheme here reads it


def test_mixed_schemes_are_worded_per_side():
    report = check(fixture(D901), fixture(D906), "2d")
    (warning,) = _statistics(report)
    assert "source normalises it with CTNormalization, which reads" in warning
    assert "target with ZScoreNormalization, which reads none of them" in warning
    reverse = check(fixture(D906), fixture(D901), "2d")
    (warning,) = _statistics(reverse)
    assert "source normalises it with ZScoreNormalization, which reads none of them" in warning
    assert "target with CTNormalization, which reads" in warning


# --- channels that differ by position (issue 9) ---------------------------------------------------------------------

D903 = "Dataset903_ProstateMRI"


def _target_folder(tmp_path, channels=None, schemes=None):
    """A copy of Dataset903 (T2, ADC) with its dataset.json channels and/or its normalisation schemes changed."""
    import json
    import shutil

    folder = shutil.copytree(fixture(D903).parent, tmp_path / D903)
    if channels is not None:
        dj = json.loads((folder / "dataset.json").read_text())
        dj["channel_names"] = channels
        (folder / "dataset.json").write_text(json.dumps(dj))
    if schemes is not None:
        for name in ("nnUNetPlans.json", "nnUNetResEncUNetMPlans.json"):
            plans = json.loads((folder / name).read_text())
            for configuration in plans["configurations"].values():
                if "normalization_schemes" in configuration:
                    configuration["normalization_schemes"] = schemes
            (folder / name).write_text(json.dumps(plans))
    return folder


def _channel_warnings(report) -> list[str]:
    return [w for w in report.warnings if w.startswith("input channels differ by position")]


def test_swapped_channels_are_warned_first_in_every_format(tmp_path):
    import json

    from plancheck.render import render

    target = _target_folder(tmp_path, channels={"0": "ADC", "1": "T2"})
    report = check(fixture(D903), target / "nnUNetPlans.json")
    assert report.compatible  # the weights load: the silent risk
    assert _channel_warnings(report) == [report.warnings[0]]
    warning = report.warnings[0]
    assert "channel 0: T2 (ZScoreNormalization) in source, ADC (ZScoreNormalization) in target" in warning
    assert "channel 1: ADC (ZScoreNormalization) in source, T2 (ZScoreNormalization) in target" in warning
    data = json.loads(render(report, "json"))
    assert data["warnings"][0] == warning
    assert data["channels"] == [
        {"position": 0, "source": {"name": "T2", "scheme": "ZScoreNormalization"},
         "target": {"name": "ADC", "scheme": "ZScoreNormalization"}, "differs": True},
        {"position": 1, "source": {"name": "ADC", "scheme": "ZScoreNormalization"},
         "target": {"name": "T2", "scheme": "ZScoreNormalization"}, "differs": True},
    ]
    for fmt in ("text", "markdown"):
        out = render(report, fmt)
        warnings = out.split("Warnings", 1)[1]
        assert warnings.lstrip("\n").lstrip().startswith("- input channels differ by position"), out


def test_channel_names_compare_case_insensitively(tmp_path):
    import json

    from plancheck.render import render

    target = _target_folder(tmp_path, channels={"0": "t2", "1": "adc"})
    report = check(fixture(D903), target / "nnUNetPlans.json")
    assert _channel_warnings(report) == []
    channels = json.loads(render(report, "json"))["channels"]
    assert [c["differs"] for c in channels] == [False, False]


def test_other_scheme_at_a_position_is_warned(tmp_path):
    target = _target_folder(tmp_path, schemes=["CTNormalization", "ZScoreNormalization"])
    report = check(fixture(D903), target / "nnUNetPlans.json")
    (warning,) = _channel_warnings(report)
    assert report.warnings[0] == warning
    assert "channel 0: T2 (ZScoreNormalization) in source, T2 (CTNormalization) in target" in warning
    assert "channel 1" not in warning


def test_no_channel_warning_without_both_dataset_jsons(tmp_path):
    import json

    target = _target_folder(tmp_path, channels={"0": "ADC", "1": "T2"})
    (target / "dataset.json").unlink()
    report = check(fixture(D903), target / "nnUNetPlans.json")
    assert _channel_warnings(report) == []
    from plancheck.render import render

    channels = json.loads(render(report, "json"))["channels"]
    assert channels[0]["target"] == {"name": None, "scheme": "ZScoreNormalization"}
    assert channels[0]["differs"] is False
