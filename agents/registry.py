"""Baselines in Redis: where every worker finds the reference of a model version.

Layout, under the namespace every undertow key shares (``undertow`` by default):

- ``{ns}:baseline:{model}:{version}`` — a hash: the baseline JSON, as `undertow baseline
  create` wrote it, and when it was registered;
- ``{ns}:baselines`` — a set of ``{model}:{version}``, so listing never needs ``KEYS``.

Workers keep parsed baselines in a small cache and re-read one when its registration time
changes, so registering a new baseline takes effect without a restart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from streams.baseline import Baseline
from streams.errors import BaselineFormatError, InputError


def baseline_key(model: str, version: str, namespace: str = "undertow") -> str:
    return f"{namespace}:baseline:{model}:{version}"


@dataclass
class _Cached:
    baseline: Baseline
    registered_at: float
    checked_at: float


class BaselineRegistry:
    """Register, fetch and list baselines; reads are cached for ``refresh_s`` seconds."""

    def __init__(
        self, client: redis.Redis, refresh_s: float = 10.0, namespace: str = "undertow"
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.index_key = f"{namespace}:baselines"
        self.refresh_s = refresh_s
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._missing: dict[tuple[str, str], float] = {}

    def register(self, baseline: Baseline) -> str:
        key = baseline_key(baseline.model, baseline.version, self.namespace)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={"json": baseline.to_json(), "registered_at": repr(time.time())},
        )
        pipe.sadd(self.index_key, f"{baseline.model}:{baseline.version}")
        pipe.execute()
        self._cache.pop((baseline.model, baseline.version), None)
        self._missing.pop((baseline.model, baseline.version), None)
        return key

    def get(self, model: str, version: str) -> Baseline | None:
        """The registered baseline, or None; at most one Redis read per ``refresh_s``."""
        now = time.monotonic()
        ident = (model, version)
        cached = self._cache.get(ident)
        if cached is not None and now - cached.checked_at < self.refresh_s:
            return cached.baseline
        missing_since = self._missing.get(ident)
        if missing_since is not None and now - missing_since < self.refresh_s:
            return None
        key = baseline_key(model, version, self.namespace)
        registered = self.client.hget(key, "registered_at")
        if registered is None:
            self._cache.pop(ident, None)
            self._missing[ident] = now
            return None
        stamp = float(registered)
        if cached is not None and cached.registered_at == stamp:
            cached.checked_at = now
            return cached.baseline
        raw = self.client.hget(key, "json")
        if raw is None:
            return None
        try:
            baseline = Baseline.from_json(raw)
        except BaselineFormatError as exc:
            raise InputError(f"registered baseline {key} cannot be read: {exc.message}") from None
        self._cache[ident] = _Cached(baseline, stamp, now)
        self._missing.pop(ident, None)
        return baseline

    def list(self) -> list[tuple[str, str]]:
        members = sorted(
            m.decode() if isinstance(m, bytes) else m for m in self.client.smembers(self.index_key)
        )
        return [tuple(m.rsplit(":", 1)) for m in members]  # type: ignore[misc]
