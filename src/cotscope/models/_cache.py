"""A content-addressed on-disk request cache: the same request is never sent twice.

The key hashes the model name, messages, prefill, template variables, generation config and sample index,
so K samples of one prompt are K entries and any change of settings misses. Only successful outputs are
stored: an error is never cached, so a rerun retries it. One SQLite file in WAL mode holds all entries;
writes are buffered and committed in batches because a commit per request would cost more than the
request itself against a fast server.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from cotscope.models._protocol import GenerateRequest, Model, ModelOutput

#: Fields of an output that describe this call rather than the generation; not stored.
_VOLATILE = ("cached", "latency_s")


def default_cache_dir() -> Path:
    """``$COTSCOPE_CACHE_DIR`` or ``$XDG_CACHE_HOME/cotscope`` or ``~/.cache/cotscope``."""
    env = os.environ.get("COTSCOPE_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cotscope"


def request_key(model: str, request: GenerateRequest) -> str:
    """The cache key of one request to one model: a 128-bit BLAKE2b hex digest."""
    payload: dict[str, Any] = {
        "model": model,
        "messages": request.messages,
        "prefill": request.prefill,
        "config": request.config.model_dump(mode="json"),
        "sample_index": request.sample_index,
    }
    if request.template_kwargs:
        # Only present when set, so that keys of plain requests stay the same as before the field existed.
        payload["template_kwargs"] = request.template_kwargs
    if request.metadata:
        payload["metadata"] = request.metadata
    raw = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class RequestCache:
    """Successful outputs by request key in one SQLite file.

    Args:
        path: the cache file; default ``<cache dir>/requests.sqlite``.
        flush_every: buffered writes committed together.
    """

    def __init__(self, path: str | Path | None = None, flush_every: int = 256) -> None:
        self.path = Path(path) if path is not None else default_cache_dir() / "requests.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flush_every = flush_every
        self._lock = threading.Lock()
        self._pending: dict[str, bytes] = {}
        # check_same_thread=False: backends may finish requests on worker threads; the lock serialises.
        self._con = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Sequence[str]) -> list[ModelOutput | None]:
        """The cached outputs of ``keys`` (``None`` where missing), marked ``cached=True``."""
        found: dict[str, bytes] = {}
        with self._lock:
            for k in keys:
                if k in self._pending:
                    found[k] = self._pending[k]
            todo = [k for k in keys if k not in found]
            # SQLite's default limit on bound parameters is 32766; stay well below it.
            for i in range(0, len(todo), 900):
                chunk = todo[i : i + 900]
                q = f"SELECT key, value FROM cache WHERE key IN ({','.join('?' * len(chunk))})"
                found.update(self._con.execute(q, chunk).fetchall())
        out: list[ModelOutput | None] = []
        loads = orjson.loads
        for k in keys:
            v = found.get(k)
            if v is None:
                self.misses += 1
                out.append(None)
            else:
                self.hits += 1
                d = loads(v)
                d["cached"] = True
                # The stored dict came from a validated ModelOutput, so validation can be skipped.
                out.append(ModelOutput.model_construct(**d))
        return out

    def get(self, key: str) -> ModelOutput | None:
        """The cached output of one key, or ``None``."""
        return self.get_many([key])[0]

    def put_many(self, items: Sequence[tuple[str, ModelOutput]]) -> int:
        """Buffer successful outputs for writing; error outputs are skipped. Returns how many were kept."""
        n = 0
        with self._lock:
            for key, o in items:
                if o.error is not None:
                    continue
                self._pending[key] = orjson.dumps(o.model_dump(exclude=set(_VOLATILE)))
                n += 1
            if len(self._pending) >= self.flush_every:
                self._flush_locked()
        return n

    def put(self, key: str, output: ModelOutput) -> bool:
        """Buffer one output; ``False`` when it is an error (never cached)."""
        return self.put_many([(key, output)]) == 1

    def flush(self) -> None:
        """Commit buffered writes."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        items = list(self._pending.items())
        self._con.execute("BEGIN")
        self._con.executemany("INSERT OR REPLACE INTO cache (key, value) VALUES (?, ?)", items)
        self._con.execute("COMMIT")
        self._pending.clear()

    def __len__(self) -> int:
        self.flush()
        row = self._con.execute("SELECT count(*) FROM cache").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Commit and close the file."""
        self.flush()
        self._con.close()


class CachedModel:
    """A backend behind the request cache: hits come from disk, misses go to the backend.

    It implements the :class:`~cotscope.models.Model` protocol, so strategies that make several rounds
    (MoreThink) cache each round.
    """

    def __init__(self, model: Model, cache: RequestCache) -> None:
        self.inner = model
        self.cache = cache
        self.name = model.name
        # Backends may name what distinguishes their outputs beyond the model name (e.g. the server URL).
        self.cache_id = str(getattr(model, "cache_id", model.name))

    @property
    def batch_size(self) -> int:
        """Requests the backend prefers per call (1 for HTTP backends)."""
        return int(getattr(self.inner, "batch_size", 1))

    @property
    def max_concurrency(self) -> int:
        """Calls the backend serves at once."""
        return int(getattr(self.inner, "max_concurrency", 1))

    def keys(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """Cache keys of requests to this model."""
        return [request_key(self.cache_id, r) for r in requests]

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        """Cached outputs where present; the rest generated by the backend and cached when successful."""
        keys = self.keys(requests)
        hits = self.cache.get_many(keys)
        miss = [i for i, h in enumerate(hits) if h is None]
        result: list[ModelOutput | None] = list(hits)
        if miss:
            outs = await self.inner.generate([requests[i] for i in miss])
            self.cache.put_many([(keys[i], o) for i, o in zip(miss, outs, strict=True)])
            for i, o in zip(miss, outs, strict=True):
                result[i] = o
        return [o for o in result if o is not None]

    async def aclose(self) -> None:
        """Flush the cache and close the backend."""
        self.cache.flush()
        await self.inner.aclose()
