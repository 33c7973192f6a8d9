"""Faust table stores of undertow, chosen by URL scheme like faust's own.

``redis://host:6379/0`` resolves to :class:`agents.stores.redis.RedisStore` through the
``faust.stores`` entry point declared in pyproject.toml. :func:`register` does the same for
the running process only, for an environment where the package is not (re)installed.
Nothing heavy is imported here: redis-py and faust load with :mod:`agents.stores.redis`.
"""

from __future__ import annotations

#: ``module:attribute`` of the ``redis://`` store, as the entry point names it.
REDIS_STORE = "agents.stores.redis:RedisStore"


def register() -> None:
    """Make ``faust.stores.by_url("redis://…")`` find the Redis store in this process."""
    from faust import stores

    stores.STORES.aliases.setdefault("redis", REDIS_STORE)


__all__ = ["REDIS_STORE", "register"]
