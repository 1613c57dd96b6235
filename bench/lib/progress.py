"""A progress bar on an interactive stderr only (tqdm), for the benchmarks' long loops."""

from __future__ import annotations

import sys


def progress(total: int | None, description: str, unit: str = "ev"):  # type: ignore[no-untyped-def] - tqdm
    from tqdm import tqdm

    return tqdm(
        total=total, desc=description, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True,
        disable=not sys.stderr.isatty(),
    )  # fmt: skip
