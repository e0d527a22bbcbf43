"""How a version's files arrive: whole or not at all, locally and on S3.

Locally the version is staged in ``<task>/.tmp-*`` and renamed into place (rename(2)
refuses a non-empty target, so two writers of one version cannot both commit).
On S3 the files are uploaded first and ``manifest.json`` last: a version exists
once its manifest does.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from ecomine import storage
from ecomine.registry._errors import VersionExists
from ecomine.registry._manifest import MANIFEST_FILE, METRICS_FILE, Manifest, _walk
from ecomine.storage import S3Options

__all__ = ["commit_local", "commit_remote"]


def commit_local(task_dir: Path, version: str, src: Path, draft: dict[str, Any]) -> Manifest:
    """Copy ``src`` into ``task_dir/.tmp-*``, seal it, and rename it to ``task_dir/version``."""
    task = draft["task"]
    final = task_dir / version
    staging = task_dir / f".tmp-{version}-{secrets.token_hex(4)}"
    try:
        storage.copy_tree(src, staging)
        storage.write_json(staging / METRICS_FILE, draft["metrics"])
        files = {rel: storage.sha256_file(staging / rel) for rel in _walk(staging)}
        manifest = Manifest(**draft, files=files)
        storage.write_json(staging / MANIFEST_FILE, manifest.model_dump(mode="json"))
        try:
            os.rename(staging, final)  # the commit: the folder appears whole or not at all
        except OSError as exc:
            if final.exists():
                raise VersionExists(f"{task}/{version}: version already registered at {final}") from exc
            raise
        with contextlib.suppress(OSError):
            dir_fd = os.open(task_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def commit_remote(target: str, src: Path, rels: list[str], draft: dict[str, Any], options: S3Options | None) -> Manifest:
    """Upload ``src`` under the prefix ``target``, then its manifest: the manifest's arrival commits."""
    try:
        # Hash the local files, upload them, then write the manifest: its presence commits.
        files = {rel: storage.sha256_file(src / rel) for rel in rels}
        storage.copy_tree(src, target, options=options)
        files[METRICS_FILE] = storage.write_json(
            storage.join(target, METRICS_FILE), draft["metrics"], options=options
        )
        manifest = Manifest(**draft, files=dict(sorted(files.items())))
        storage.write_json(storage.join(target, MANIFEST_FILE), manifest.model_dump(mode="json"), options=options)
    except BaseException:
        with contextlib.suppress(Exception):
            storage.delete_prefix(target, options=options)
        raise
    return manifest
