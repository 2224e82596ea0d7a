"""Artifact manifests: every file written with its sha256 and the sha256 of what it came from.

Writes are atomic (temp file in the same folder, fsync, rename), so a crash never leaves a file
that looks complete but is not. A manifest is a JSON file named ``<artifact>.manifest.json`` or
``manifest.json`` for a folder artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from sim2real import __version__

_UMASK = os.umask(0)
os.umask(_UMASK)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is fsynced and renamed onto ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` atomically; return its sha256."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return sha256_bytes(data)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> str:
    return write_bytes_atomic(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read JSON with a one-line error naming the file when it is missing or not JSON."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def manifest_path(artifact: str | os.PathLike) -> Path:
    """Where the manifest of a file artifact lives: beside it, ``<name>.manifest.json``."""
    artifact = Path(artifact)
    if artifact.is_dir():
        return artifact / "manifest.json"
    return artifact.with_name(artifact.name + ".manifest.json")


def new_manifest(kind: str, *, inputs: dict[str, str] | None = None, **fields: Any) -> dict:
    """A manifest skeleton: ``inputs`` maps a role ("dataset", "checkpoint") to a sha256."""
    return {
        "kind": kind,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sim2real_version": __version__,
        "inputs": dict(inputs or {}),
        **fields,
    }


def write_manifest(artifact: str | os.PathLike, manifest: dict) -> Path:
    """Write the manifest of a file artifact, adding the artifact's own sha256."""
    artifact = Path(artifact)
    if artifact.is_file():
        manifest = {**manifest, "sha256": sha256_file(artifact), "file": artifact.name}
    target = manifest_path(artifact)
    write_json_atomic(target, manifest)
    return target


def read_manifest(artifact: str | os.PathLike, verify: bool = True) -> dict:
    """Read an artifact's manifest; with ``verify`` the file's sha256 must match the recorded one."""
    artifact = Path(artifact)
    manifest = read_json(manifest_path(artifact), what="manifest")
    if verify and artifact.is_file():
        if "sha256" not in manifest:
            raise ValueError(f"manifest of {artifact} records no sha256: it cannot be verified")
        actual = sha256_file(artifact)
        if actual != manifest["sha256"]:
            raise ValueError(
                f"{artifact} does not match its manifest (sha256 {actual[:12]}… ≠ "
                f"{manifest['sha256'][:12]}…): the file was changed or truncated"
            )
    return manifest
