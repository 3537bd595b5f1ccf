"""Versioned detector state under ``models/``: ``<bank>/v<N>.npz`` (arrays) + ``v<N>.json`` (metadata).

Plain arrays and JSON only, loaded with ``allow_pickle=False``, so a model file from elsewhere
can be inspected and cannot run code. Each version records what produced it (code version,
configuration), what it covers (series count, event-time window) and when. A loader per
format version; an unknown version is refused, never guessed at.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aiops import __version__
from aiops.detect.bank import DetectorBank, config_from_json
from aiops.errors import StateError

FORMAT_VERSION = 1
_VERSION_FILE = re.compile(r"v(\d+)\.json$")


@dataclass(frozen=True)
class ModelInfo:
    bank: str
    version: int
    path: Path
    meta: dict[str, Any]


def versions(models_dir: str | Path, bank: str) -> list[int]:
    folder = Path(models_dir) / bank
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_FILE.match(p.name)))


def save_bank(
    models_dir: str | Path,
    bank_name: str,
    bank: DetectorBank,
    series_keys: list[str],
    data_window: tuple[int, int] | None = None,
    extra: dict[str, Any] | None = None,
) -> ModelInfo:
    """Write the next version atomically (temp file + rename) and return where it went."""
    if len(series_keys) < bank.size:
        raise ValueError(f"{len(series_keys)} series keys for a bank of {bank.size} series")
    folder = Path(models_dir) / bank_name
    folder.mkdir(parents=True, exist_ok=True)
    version = (versions(models_dir, bank_name) or [0])[-1] + 1
    meta = {
        "format_version": FORMAT_VERSION,
        "bank_version": DetectorBank.VERSION,
        "code_version": __version__,
        "created_unix": time.time(),
        "series_count": bank.size,
        "data_window_unix_nano": list(data_window) if data_window else None,
        "config": bank.config.to_json(),
        "series_keys": series_keys[: bank.size],
        **(extra or {}),
    }
    arrays_path = folder / f"v{version}.npz"
    tmp = folder / f".v{version}.npz.tmp"
    with tmp.open("wb") as fh:
        np.savez_compressed(fh, **bank.state())
    os.replace(tmp, arrays_path)
    _publish(folder, version, meta)
    return ModelInfo(bank_name, version, arrays_path, meta)


def _publish(folder: Path, version: int, meta: dict[str, Any]) -> Path:
    """Write ``v<N>.json`` atomically: the metadata file is what makes a version visible."""
    meta_tmp = folder / f".v{version}.json.tmp"
    meta_tmp.write_text(json.dumps(meta, indent=1))
    os.replace(meta_tmp, folder / f"v{version}.json")
    return folder / f"v{version}.json"


def save_json_model(models_dir: str | Path, name: str, content: dict[str, Any]) -> ModelInfo:
    """A model that is all metadata (forecast fits and their metrics) as the next ``name/v<N>.json``."""
    folder = Path(models_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    version = (versions(models_dir, name) or [0])[-1] + 1
    meta = {"format_version": FORMAT_VERSION, "code_version": __version__, "created_unix": time.time(), **content}
    return ModelInfo(name, version, _publish(folder, version, meta), meta)


def load_bank(models_dir: str | Path, bank_name: str, version: int | None = None) -> tuple[DetectorBank, list[str], ModelInfo]:
    """The given (default: latest) version as a live bank plus the series keys its rows belong to."""
    known = versions(models_dir, bank_name)
    if not known:
        raise StateError(f"no saved versions of bank {bank_name!r} under {models_dir}")
    version = known[-1] if version is None else version
    folder = Path(models_dir) / bank_name
    try:
        meta = json.loads((folder / f"v{version}.json").read_text())
    except (OSError, ValueError) as e:
        raise StateError(f"bank {bank_name!r} v{version}: unreadable metadata: {e}") from e
    if not isinstance(meta, dict):
        raise StateError(f"bank {bank_name!r} v{version}: metadata is not a JSON object")
    if meta.get("format_version") != FORMAT_VERSION or meta.get("bank_version") != DetectorBank.VERSION:
        raise StateError(
            f"bank {bank_name!r} v{version} has format {meta.get('format_version')!r}/bank "
            f"{meta.get('bank_version')!r}; this code reads {FORMAT_VERSION}/{DetectorBank.VERSION}"
        )
    try:
        bank = DetectorBank(config_from_json(meta["config"]))
        with (folder / f"v{version}.npz").open("rb") as fh, np.load(fh, allow_pickle=False) as z:
            bank.load_state({k: z[k] for k in z.files})
    except Exception as e:  # a damaged file can fail in any reader, in any way
        raise StateError(f"bank {bank_name!r} v{version}: unreadable arrays: {type(e).__name__}: {e}") from e
    keys = list(meta.get("series_keys", []))
    if len(keys) != bank.size:
        raise StateError(f"bank {bank_name!r} v{version}: {len(keys)} series keys for {bank.size} rows")
    return bank, keys, ModelInfo(bank_name, version, folder / f"v{version}.npz", meta)


def save_blob(models_dir: str | Path, name: str, blob: bytes, content: dict[str, Any], keep: int = 3) -> ModelInfo:
    """Write an opaque state blob (a pipeline snapshot) as the next ``name/v<N>.npz``, keeping the
    last ``keep`` versions: a partition's checkpoints, where only the recent ones are worth keeping.
    """
    folder = Path(models_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    known = versions(models_dir, name)
    version = (known or [0])[-1] + 1
    tmp = folder / f".v{version}.npz.tmp"
    tmp.write_bytes(blob)
    os.replace(tmp, folder / f"v{version}.npz")
    meta = {"format_version": FORMAT_VERSION, "code_version": __version__, "created_unix": time.time(),
            "bytes": len(blob), **content}  # fmt: skip
    info = ModelInfo(name, version, _publish(folder, version, meta), meta)
    for old in known[: max(0, len(known) + 1 - keep)]:
        for suffix in (".json", ".npz"):  # metadata first: it is what makes a version visible
            (folder / f"v{old}{suffix}").unlink(missing_ok=True)
    return info


def load_blob(models_dir: str | Path, name: str) -> tuple[bytes, dict[str, Any], int] | None:
    """The latest version written by :func:`save_blob` (blob, metadata, version), or None if there is none."""
    known = versions(models_dir, name)
    if not known:
        return None
    folder = Path(models_dir) / name
    try:
        meta = json.loads((folder / f"v{known[-1]}.json").read_text())
        return (folder / f"v{known[-1]}.npz").read_bytes(), meta, known[-1]
    except (OSError, ValueError) as e:
        raise StateError(f"{name} v{known[-1]}: unreadable: {e}") from e
