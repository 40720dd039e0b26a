"""Run identity: namespaced run keys, deterministic run ids and request fingerprints."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any, Final

import msgspec

from .definitions import RunRequest, RunTemplate
from .errors import InvalidId
from .events import RunRequested

__all__ = ["dedupe_reason", "fingerprint", "request_run", "run_id", "validate_run_id"]

#: Namespace of every arcoflow uuid5; fixed forever, or every run id changes.
NAMESPACE: Final = uuid.UUID("6f1c1f0e-7a4b-5c1e-9d2a-a1c0f10a0001")
_json = msgspec.json.Encoder(order="sorted")
_RUN_ID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


_PREFIX: Final = NAMESPACE.bytes


def uuid5(name: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, name))``, computed without building a ``UUID`` object:
    replay derives one per run key of every logged tick and evaluation, and the ``uuid``
    module's path costs several times the hash itself."""
    digest = bytearray(hashlib.sha1(_PREFIX + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def run_id(run_key: str) -> str:
    """The run id of ``run_key``: uuid5, so every retry of a request names the same run."""
    return uuid5("run:" + run_key)


def validate_run_id(value: str) -> str:
    """Return ``value`` if it has the shape of a run id (a lower-case UUID), else raise
    :class:`InvalidId`: the CLI and the HTTP API refuse a malformed run id the same way."""
    if not isinstance(value, str) or _RUN_ID.fullmatch(value) is None:
        raise InvalidId(f"run id {value!r} is not valid: run ids are lower-case UUIDs")
    return value


def dedupe_reason(run_keys: tuple[str, ...]) -> str | None:
    """Why a tick or evaluation made no new run for ``run_keys``: each already had one.

    >>> dedupe_reason(("manual:k",))
    'run key manual:k already requested: run eb313389-a443-5159-a04e-b40c82b53280'
    """
    if not run_keys:  # the common case: checked once per replayed tick and evaluation
        return None
    phrases = [f"run key {k} already requested: run {run_id(k)}" for k in run_keys]
    return "; ".join(phrases) or None


def derived_id(idempotency_key: str) -> str:
    """An id derived from an idempotency key (evaluation ids): never random, so replays match."""
    return uuid5(idempotency_key)


def fingerprint(target: str, config: dict[str, Any], tags: dict[str, str]) -> str:
    """A stable hash of the canonical (sorted-key JSON) encoding of what a run does."""
    data = _json.encode({"target": target, "config": config, "tags": tags})
    return hashlib.sha256(data).hexdigest()[:32]


def request_run(
    origin: str, requested_by: str, template: RunTemplate, request: RunRequest, default_key: str
) -> RunRequested:
    """The ``RunRequested`` event for ``request``, its key namespaced by ``origin``.

    ``origin`` is ``schedule:<id>``, ``sensor:<id>``, ``manual`` or ``backfill``: a manual run
    can never suppress a scheduled one because their keys live in different namespaces.
    """
    run_key = f"{origin}:{request.run_key if request.run_key is not None else default_key}"
    target = request.target or template.target
    config = {**template.config, **request.config}
    tags = {**template.tags, **request.tags}
    return RunRequested(
        run_id=run_id(run_key),
        run_key=run_key,
        fingerprint=fingerprint(target, config, tags),
        origin=origin,
        requested_by=requested_by,
        target=target,
        launcher=template.launcher,
        config=config,
        tags=tags,
    )
