"""The differences between two JSON values, leaf by leaf: what ``plancheck diff`` and the warnings compare.

Plans and dataset.json files are JSON: dicts, lists, strings, numbers, booleans and null.
:func:`differences` walks both values together and yields, for each place where they differ,
the path (a tuple of dict keys and list indices, as :mod:`plancheck.inputs.paths` writes them) and
one kind:

* ``added`` / ``removed``: a dict key only in B / only in A;
* ``changed``: another value of the same kind, or a list of another length (the list is
  one change: a different depth, which :mod:`plancheck.compare.plansdiff` reports on the whole list);
* ``type_changed``: a value of another kind (a list for a dict, null for a number, ...).

Numbers are compared by value, so ``1`` and ``1.0`` are the same spacing (so are ``true`` and
``1``, as Python and deepdiff's ``ignore_numeric_type_changes`` have it), and NaN equals NaN.
Lists of the same length are compared element by element, by index: in nnU-Net's plans a
list position means something (a stage, an axis, a channel), so ``[32, 64, 128]`` against
``[64, 128, 256]`` is three changed stages, not one removed and one added.

This replaces deepdiff, which imports pandas (a third of a second) for hashing that this
comparison never needs. Standard library only.
"""

from __future__ import annotations

import json
import math
import typing as t

__all__ = ["PERMUTATION_NOTE", "differences", "is_permutation"]

Json = t.Any
Path = t.Tuple[t.Union[str, int], ...]

_NUMBERS = (int, float)  # bool is an int


def differences(a: Json, b: Json, path: Path = ()) -> t.Iterator[tuple[Path, str]]:
    """(path, kind) for each difference between ``a`` and ``b``, in A's order, then B's extra keys."""
    if isinstance(a, _NUMBERS) and isinstance(b, _NUMBERS):
        if a != b and not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
            yield path, "changed"
        return
    if type(a) is not type(b):
        yield path, "type_changed"
        return
    if isinstance(a, dict):
        for key, value in a.items():
            if key in b:
                yield from differences(value, b[key], (*path, key))
            else:
                yield (*path, key), "removed"
        for key in b:
            if key not in a:
                yield (*path, key), "added"
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            yield path, "changed"
            return
        for index, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, (*path, index))
    elif a != b:
        yield path, "changed"


#: What a permuted list of per-axis values means in plans.
PERMUTATION_NOTE = "same values in a different axis order: transpose_forward or spacing (anisotropy) differs"


def is_permutation(a: Json, b: Json) -> bool:
    """Two different lists holding the same values (compared as JSON) in another order."""
    return (
        isinstance(a, list)
        and isinstance(b, list)
        and a != b
        and sorted(map(json.dumps, a)) == sorted(map(json.dumps, b))
    )

