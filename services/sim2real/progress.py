"""Progress that reads well in a terminal and in a log.

On a terminal, a tqdm bar redrawn in place. Anywhere else (CI, ``docker compose logs``, a file)
one plain line every ``LOG_INTERVAL_S`` seconds and a last one at the end, instead of thousands of
carriage-return updates. ``SIM2REAL_PROGRESS`` chooses explicitly: ``bar``, ``log`` or ``off``.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm

LOG_INTERVAL_S = 10.0
MODES = ("bar", "log", "off")
_LOG_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%) {elapsed} elapsed, {remaining} left, {rate_fmt}{postfix}"
_LOG_FORMAT_NO_TOTAL = "{desc}: {n_fmt} {unit} {elapsed} elapsed, {rate_fmt}{postfix}"


class _Lines:
    """A stream that drops the bare newline tqdm writes after its last update (a log has one already)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return 0 if text == "\n" else self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()


class _LogLines(tqdm):
    """tqdm that prints whole lines at most every ``mininterval`` seconds, never a carriage return.

    ``set_postfix`` and ``refresh`` redraw at once in tqdm; here they wait for the interval too, so a
    caller that sets a postfix on every step still gives one line per interval (and the last one).
    """

    _printed_at: float | None = None
    _closing = False

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":          # tqdm clearing its line: nothing to clear in a log
            return True
        now = time.monotonic()
        done = self.total is not None and self.n >= self.total
        if self._printed_at is not None and not (done or self._closing) \
                and now - self._printed_at < self.mininterval:
            return True
        self._printed_at = now
        self.fp.write((msg or self.__str__()).strip() + "\n")
        self.fp.flush()
        return True

    def close(self) -> None:
        self._closing = True
        super().close()


def mode() -> str:
    """``bar`` on a terminal, ``log`` elsewhere, unless ``SIM2REAL_PROGRESS`` says otherwise."""
    chosen = os.environ.get("SIM2REAL_PROGRESS", "").strip().lower()
    if chosen:
        if chosen not in MODES:
            raise ValueError(f"SIM2REAL_PROGRESS={chosen!r} is not one of {', '.join(MODES)}")
        return chosen
    return "bar" if sys.stderr.isatty() else "log"


def progress_bar(iterable=None, *, disable: bool = False, **kwargs) -> tqdm:
    """A tqdm-compatible progress object on stderr for the current :func:`mode`."""
    how = mode()
    if how == "bar":
        return tqdm(iterable, file=sys.stderr, disable=disable, dynamic_ncols=True, **kwargs)
    kwargs.pop("leave", None)
    total = kwargs.get("total", len(iterable) if hasattr(iterable, "__len__") else None)
    return _LogLines(iterable, file=_Lines(sys.stderr), disable=disable or how == "off", leave=True,
                     mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S,
                     bar_format=_LOG_FORMAT if total else _LOG_FORMAT_NO_TOTAL, **kwargs)
