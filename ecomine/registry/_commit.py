"""How a version's files arrive: whole or not at all, locally and on S3.

Locally the version is staged in ``<task>/.tmp-*`` and renamed into place (rename(2)
refuses a non-empty target, so two writers of one version cannot both commit).
On S3 a writer first claims the version (an object created only if absent), then
uploads the files and creates ``manifest.json`` last, also only if absent: a version
exists once its manifest does, and is never overwritten.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ecomine import storage
from ecomine.registry._errors import RegistryError, VersionExists
from ecomine.registry._manifest import MANIFEST_FILE, METRICS_FILE, Manifest, _walk
from ecomine.storage import S3Options, StorageConflict

__all__ = ["commit_local", "commit_remote", "leftover_error"]

logger = logging.getLogger("ecomine.registry")


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


def commit_remote(
    target: str, claim: str, src: Path, rels: list[str], draft: dict[str, Any], options: S3Options | None
) -> Manifest:
    """Claim the version, upload ``src`` under the prefix ``target``, then create its manifest.

    S3 has no rename, so two writers of one version would upload over each other's files:
    the claim (``<task>/.claims/<version>.json``, created with ``If-None-Match: *``) lets
    only one upload; the manifest is created the same way, so it is never overwritten.
    """
    label = f"{draft['task']}/{draft['version']}"
    try:
        storage.create_json(claim, {"version": draft["version"], "claimed_at": draft["created_at"].isoformat(),
                                    "by": f"{socket.gethostname()}:{os.getpid()}"}, options=options)
    except StorageConflict:
        if storage.exists(storage.join(target, MANIFEST_FILE), options=options):
            raise VersionExists(f"{label}: version already registered at {target}") from None
        raise VersionExists(
            f"{label}: another writer is registering this version (claim {claim}); if none is, "
            f"a registration crashed: delete {claim} and {target}/"
        ) from None
    uploaded = False
    try:
        if storage.exists(target, options=options):
            raise leftover_error(label, target)
        uploaded = True
        # Hash the local files, upload them, then write the manifest: its presence commits.
        files = {rel: storage.sha256_file(src / rel) for rel in rels}
        storage.copy_tree(src, target, options=options)
        files[METRICS_FILE] = storage.write_json(
            storage.join(target, METRICS_FILE), draft["metrics"], options=options
        )
        manifest = Manifest(**draft, files=dict(sorted(files.items())))
        try:
            storage.create_json(storage.join(target, MANIFEST_FILE), manifest.model_dump(mode="json"), options=options)
        except StorageConflict:  # only a writer that takes no claim (an older ecomine) gets here
            uploaded = False  # the committed files are that writer's now: not ours to delete
            raise VersionExists(
                f"{label}: registered meanwhile by a writer that took no claim, at {target}; "
                "this upload may have overwritten its files: check it with Registry.fetch"
            ) from None
    except BaseException as exc:
        if uploaded:  # the files under target are this writer's own: it holds the claim
            _undo(exc, f"remove the partial upload {target}/", lambda: storage.delete_prefix(target, options=options))
        _undo(exc, f"release the claim {claim}", lambda: storage.delete(claim, missing_ok=True, options=options))
        raise
    try:
        storage.delete(claim, missing_ok=True, options=options)
    except storage.StorageError as exc:  # the version is committed; a stale claim only blocks its id
        logger.warning("%s registered, but its claim %s stays (%s); Registry.delete removes it", label, claim, exc)
    return manifest


def leftover_error(label: str, target: str) -> RegistryError:
    return RegistryError(
        f"{label}: {target} holds files but no manifest (left by a failed registration?); "
        "delete that folder or choose another version"
    )


def _undo(failure: BaseException, what: str, step: Callable[[], object]) -> None:
    """Run a clean-up step after ``failure``; if it fails too, say so on the failure (never silently)."""
    try:
        step()
    except Exception as exc:
        failure.add_note(f"could not {what} afterwards ({type(exc).__name__}: {exc}); do it by hand")
        logger.warning("could not %s after a failed registration: %s", what, exc)
