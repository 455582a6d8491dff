"""Which foreground intensity statistics an nnU-Net normalisation scheme reads, asked of nnU-Net itself.

A configuration's ``normalization_schemes`` names one class per channel; nnU-Net's
preprocessor finds it in ``nnunetv2.preprocessing.normalization`` and gives it the
channel's ``foreground_intensity_properties_per_channel``. Whether a scheme uses them
(CTNormalization clips and scales with them; ZScoreNormalization uses the image's own
statistics) is read by running nnU-Net's class once on a tiny image with a dict that
records what is read. That module needs only numpy: no torch.
"""

from __future__ import annotations

import functools

__all__ = ["statistics_read"]


class _Recorder(dict):
    """An intensity-properties dict that answers every key with 1.0 and remembers the keys read."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> float:
        self.read.add(key)
        return 1.0

    def get(self, key: str, default: object = None) -> float:
        self.read.add(key)
        return 1.0


@functools.lru_cache(maxsize=None)
def statistics_read(scheme: str) -> frozenset[str] | None:
    """The statistics nnU-Net's normalisation class ``scheme`` reads; None when it is not one of nnU-Net's."""
    import numpy as np

    from plancheck._nnunet import quiet

    with quiet():
        from nnunetv2.preprocessing.normalization import default_normalization_schemes as schemes
    cls = getattr(schemes, scheme, None) if isinstance(scheme, str) else None
    if not (isinstance(cls, type) and issubclass(cls, schemes.ImageNormalization)) or getattr(
        cls, "__abstractmethods__", None
    ):
        return None
    recorder = _Recorder()
    try:
        cls(use_mask_for_norm=False, intensityproperties=recorder).run(np.ones((1, 2, 2, 2), dtype=np.float32))
    except Exception:  # noqa: BLE001 - a scheme that fails on a dummy image: say what it read up to there
        pass
    return frozenset(recorder.read)
