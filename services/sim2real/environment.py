"""Environment variables set for a block of code and restored afterwards."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def scoped_environ(values: Mapping[str, str], keep_existing: bool = False) -> Iterator[dict[str, str]]:
    """Set ``values`` in ``os.environ`` inside the block (``keep_existing``: only those not set yet).

    Yields what was set; on exit every touched variable has its previous value again, or is unset.
    """
    applied = {key: value for key, value in values.items() if not (keep_existing and key in os.environ)}
    saved = {key: os.environ.get(key) for key in applied}
    os.environ.update(applied)
    try:
        yield applied
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
