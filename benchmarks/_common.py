"""Shared set-up for the benchmark scripts: Django on a throwaway data directory, peak-RSS sampling."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def setup_django(*, fresh_data: bool = True) -> None:
    """Configure Django; with fresh_data, on a temporary data dir that reuses the prepared models."""
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DEBUG", "1")
    if fresh_data:
        models = Path(os.environ.get("PARLEY_MODELS_DIR", REPO / "var" / "models")).resolve()
        os.environ["PARLEY_MODELS_DIR"] = str(models)
        os.environ["PARLEY_DATA_DIR"] = tempfile.mkdtemp(prefix="parley-bench-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    if fresh_data:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


class PeakRSS:
    """Samples this process's resident memory every 5 ms; `peak_mib` is the maximum seen."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak / 2**20


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)
