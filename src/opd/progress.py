"""Progress bars that stay readable in job logs (files redraw every 30 s, not every step)."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    kwargs.setdefault("mininterval", 0.2 if sys.stderr.isatty() else 30.0)
    return tqdm(iterable, **kwargs)
