"""Warnings of `plancheck check`: what loads but sees other data (issue 9: channels, intensity statistics)."""

from __future__ import annotations

import pytest

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
    from plancheck.normalization import statistics_read

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
