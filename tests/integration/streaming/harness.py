"""What the streaming tests need around a real worker: processes, topics, data, windows.

- `WorkerProcess` runs ``undertow worker`` as a subprocess configured from the environment,
  on a free metrics port, with its log in a file; it waits (bounded) for ``/readyz`` and is
  always stopped (SIGTERM, then SIGKILL) even when a test fails half-way.
- `TopicTail` / `read_topic` read a topic from its beginning with ``assign`` + ``seek``
  (no consumer group, so no join delay). Tansu's ``end_offsets()`` is wrong (it reports
  the last batch's base offset + 1), so "the end" is when nothing new arrives for a while.
- `make_baseline` / `make_events` / `drift_stream` generate a baseline's reference data and
  streams of predictions, optionally with two features drifting over an event-time interval;
  `publish` sends them (paced) with undertow's own publisher. `Windows` says which events
  fall in which window, exactly as the worker counts them.
- `numpy_psi` is a plain-numpy PSI: only the bins come from the baseline, the counting and
  the formula do not use `streams`.
- `Fleet` starts the workers of one deployment over the course of a test (scale out, crash,
  replace, scale in), each with its own name and log, and stops every one at the end;
  `PartitionProgress` samples each partition's Redis offset and heartbeat in the background,
  the observable of "this partition is owned and progressing" (see `docs/scaling.md`).

Everything that waits is bounded in time and in iterations.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.devstack.environment import LOOPBACK, free_port
from streams.baseline import Baseline, CategoricalReference, NumericReference

from ..processes import LoggedProcess

REPO_ROOT = Path(__file__).resolve().parents[3]

#: The settings of every streaming test: seconds instead of minutes.
WINDOW_S, SLIDE_S, GRACE_S = 10, 2, 2
PARTITIONS = 4
BASE_SETTINGS: dict[str, str] = {
    "UNDERTOW_WINDOW": f"{WINDOW_S}s",
    "UNDERTOW_SLIDE": f"{SLIDE_S}s",
    "UNDERTOW_GRACE": f"{GRACE_S}s",
    "UNDERTOW_IDLE_TIMEOUT": "5s",
    "UNDERTOW_PARTITIONS": str(PARTITIONS),
}

MODEL, VERSION = "credit", "v1"
NUMERIC = ("amount", "age", "income", "tenure")
CATEGORICAL = ("merchant", "channel")
MERCHANTS = ("grocery", "travel", "online", "fuel", "other")
MERCHANT_P = (0.35, 0.15, 0.25, 0.15, 0.10)
CHANNELS = ("web", "mobile", "store")
CHANNEL_P = (0.4, 0.4, 0.2)
#: The merchant mix while drifting: travel booms and an unseen category appears.
DRIFT_MERCHANT = ("grocery", "travel", "online", "fuel", "other", "crypto")
DRIFT_MERCHANT_P = (0.10, 0.45, 0.10, 0.05, 0.05, 0.25)


# ---------------------------------------------------------------------------- processes


class WorkerError(RuntimeError):
    """A worker did not start, did not become ready, or died."""


class WorkerProcess(LoggedProcess):
    """One ``undertow worker`` subprocess in its own session, its output in ``log_path``."""

    stop_timeout = 20.0
    tail_lines = 40

    def __init__(
        self,
        *,
        kafka: str,
        redis_url: str,
        prefix: str,
        log_path: Path,
        settings: Mapping[str, str] | None = None,
        name: str = "worker",
    ) -> None:
        self.name = name
        self.kafka = kafka
        self.redis_url = redis_url
        self.prefix = prefix
        self.log_path = Path(log_path)
        self.settings = {**BASE_SETTINGS, **(settings or {})}
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def argv(self) -> list[str]:
        script = Path(sys.executable).parent / "undertow"
        head = [str(script)] if script.exists() else [sys.executable, "-m", "agents"]
        return [*head, "worker", "--loglevel", "info"]

    def env(self) -> dict[str, str]:
        # Nothing undertow-specific leaks in from the shell that runs the tests.
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERTOW_")}
        env.update(self.settings)
        env.update(
            UNDERTOW_KAFKA=self.kafka,
            UNDERTOW_REDIS_URL=self.redis_url,
            UNDERTOW_TOPIC_PREFIX=self.prefix,
            UNDERTOW_METRICS_PORT=str(self.port),
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self) -> WorkerProcess:
        if self.proc is not None:
            raise WorkerError(f"{self.name} is already started")
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Faust keeps a data directory in its working directory: not in the repo.
                cwd=self.log_path.parent,
                env=self.env(),
                start_new_session=True,  # its own process group, signalled as one
                close_fds=True,
            )
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise WorkerError(f"{self.name} is not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def readyz(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """The ``/readyz`` document (ready or not), or None when the worker does not answer."""
        url = f"http://{LOOPBACK}:{self.port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:  # 503: answering, not ready
            body = exc.read()
        except (OSError, ValueError):
            return None
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def partitions(self) -> set[int] | None:
        doc = self.readyz()
        if doc is None or not doc.get("ready"):
            return None
        return set(doc.get("partitions") or [])

    def wait_ready(self, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        for _ in range(int(timeout / 0.2) + 1):
            self.check_alive()
            last = self.readyz()
            if last is not None and last.get("ready"):
                return last
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        raise WorkerError(
            f"{self.name} (pid {self.pid}, port {self.port}) not ready within {timeout:g} s; "
            f"last /readyz: {last}\n{self.log_tail()}"
        )

    def check_alive(self) -> None:
        if not self.alive():
            code = None if self.proc is None else self.proc.returncode
            raise WorkerError(f"{self.name} exited with status {code}\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL, at once: the crash a worker must survive."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM without waiting (`stop` waits): stop several workers at once."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_assignment(
    workers: Sequence[WorkerProcess], partitions: int = PARTITIONS, timeout: float = 90.0
) -> dict[str, set[int]]:
    """Wait until every worker is ready and together they own each partition exactly once."""
    deadline = time.monotonic() + timeout
    owned: dict[str, set[int] | None] = {}
    for _ in range(int(timeout / 0.25) + 1):
        for w in workers:
            w.check_alive()
        owned = {w.name: w.partitions() for w in workers}
        sets = [s for s in owned.values() if s]
        if len(sets) == len(workers):
            union = set().union(*sets)
            if union == set(range(partitions)) and sum(map(len, sets)) == partitions:
                return {k: v for k, v in owned.items() if v is not None}
        if time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    tails = "\n".join(w.log_tail(15) for w in workers)
    raise WorkerError(f"no settled assignment within {timeout:g} s: {owned}\n{tails}")


# ---------------------------------------------------------------------------- topics


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    def json(self) -> Any:
        return json.loads(self.value)


class TopicTail:
    """Reads one topic from the beginning of every partition, without a consumer group."""

    def __init__(self, bootstrap: str, topic: str, *, metadata_timeout: float = 30.0) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.topic = topic
        self.records: list[Record] = []
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="undertow-streaming-test",
            enable_auto_commit=False,
            group_id=None,
            max_poll_records=5000,
        )
        deadline = time.monotonic() + metadata_timeout
        parts: set[int] | None = None
        for _ in range(int(metadata_timeout / 0.2) + 1):
            parts = self._consumer.partitions_for_topic(topic)
            if parts or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
            self._consumer.poll(timeout_ms=0)  # refreshes metadata
        if not parts:
            self._consumer.close()
            raise RuntimeError(f"topic {topic} has no partitions after {metadata_timeout:g} s")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)

    def poll(self, timeout_s: float = 0.5) -> list[Record]:
        """New records (possibly none) within ``timeout_s``."""
        got: list[Record] = []
        for tp, batch in self._consumer.poll(timeout_ms=round(timeout_s * 1000)).items():
            got.extend(
                Record(tp.topic, tp.partition, r.offset, r.key, r.value or b"") for r in batch
            )
        self.records.extend(got)
        return got

    def drain(self, quiet_s: float = 2.0, max_s: float = 30.0) -> list[Record]:
        """Everything up to the end: until nothing new arrives for ``quiet_s`` (bounded)."""
        start = last_new = time.monotonic()
        for _ in range(int(max_s / 0.2) + 10):
            now = time.monotonic()
            if now - last_new >= quiet_s or now - start >= max_s:
                break
            if self.poll(0.2):
                last_new = time.monotonic()
        return self.records

    def wait_for(
        self, done: Callable[[list[Record]], bool], timeout: float, what: str = "records"
    ) -> list[Record]:
        """Poll until ``done(all records so far)``; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.2) + 10):
            if done(self.records):
                return self.records
            if time.monotonic() >= deadline:
                break
            self.poll(0.2)
        if done(self.records):
            return self.records
        raise AssertionError(
            f"timed out after {timeout:g} s waiting for {what} on {self.topic} "
            f"({len(self.records)} records read)"
        )

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicTail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_topic(
    bootstrap: str, topic: str, quiet_s: float = 2.0, max_s: float = 30.0
) -> list[Record]:
    """Every record of ``topic``, read from the beginning until it stays quiet."""
    with TopicTail(bootstrap, topic) as tail:
        return list(tail.drain(quiet_s=quiet_s, max_s=max_s))


# ---------------------------------------------------------------------------- windows


def final_snapshots(records: Iterable[Record]) -> list[dict[str, Any]]:
    """The final drift snapshots (performance windows have their own, see test_labels)."""
    return [
        s
        for s in (r.json() for r in records)
        if s.get("final") and s.get("kind", "drift") == "drift"
    ]


@dataclass(frozen=True)
class Windows:
    """The hopping windows of the tests, in integer milliseconds as the worker keeps them."""

    size_ms: int = WINDOW_S * 1000
    slide_ms: int = SLIDE_S * 1000

    @staticmethod
    def ms(ts: float) -> int:
        return round(ts * 1000)  # exactly as agents.ingest rounds event times

    def starts_containing(self, ts: float) -> range:
        t = self.ms(ts)
        pane = t - t % self.slide_ms
        return range(pane - self.size_ms + self.slide_ms, pane + 1, self.slide_ms)

    def members(self, timestamps: Sequence[float]) -> dict[int, list[int]]:
        """Window start (ms) → indices of the events it holds, for every non-empty window."""
        out: dict[int, list[int]] = {}
        for i, ts in enumerate(timestamps):
            for start in self.starts_containing(ts):
                out.setdefault(start, []).append(i)
        return out

    def counts(self, timestamps: Sequence[float]) -> dict[int, int]:
        return {s: len(ix) for s, ix in self.members(timestamps).items()}


# ---------------------------------------------------------------------------- data


def _score(
    amount: np.ndarray, age: np.ndarray, income: np.ndarray, tenure: np.ndarray
) -> np.ndarray:
    z = 0.6 * np.log(amount) - 0.03 * (age - 40) - 0.01 * income / 1000 - 0.004 * tenure - 1.2
    score: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return score


def reference_columns(n: int, seed: int) -> dict[str, list[Any]]:
    """Reference rows: 4 numeric features, 2 categorical ones, a binary model's score."""
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(3.5, 0.6, n), 2)
    age = np.round(rng.normal(40, 12, n).clip(18, 95), 1)
    income = np.round(rng.gamma(4.0, 12_000.0, n), 0)
    tenure = rng.integers(1, 121, n)
    return {
        "amount": amount.tolist(),
        "age": age.tolist(),
        "income": income.tolist(),
        "tenure": [int(t) for t in tenure],
        "merchant": rng.choice(MERCHANTS, n, p=MERCHANT_P).tolist(),
        "channel": rng.choice(CHANNELS, n, p=CHANNEL_P).tolist(),
        "prediction": np.round(_score(amount, age, income, tenure), 6).tolist(),
    }


def write_csv(path: Path, columns: Mapping[str, Sequence[Any]]) -> Path:
    names = list(columns)
    n = len(columns[names[0]])
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(names)
        for i in range(n):
            out.writerow([_cell(columns[c][i]) for c in names])
    return path


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)  # round-trips exactly
    return str(v)


def make_baseline(
    tmp: Path, rows: int = 20_000, seed: int = 1
) -> tuple[Baseline, dict[str, list[Any]]]:
    from streams.baseline_builder import BuildOptions, build_baseline
    from streams.tabular import TableFile

    columns = reference_columns(rows, seed)
    path = write_csv(tmp / "reference.csv", columns)
    baseline, report = build_baseline(
        TableFile(path), BuildOptions(model=MODEL, version=VERSION, task="binary")
    )
    assert report.bad == 0 and report.rows == rows
    return baseline, columns


def register_baseline(redis_url: str, prefix: str, baseline: Baseline) -> None:
    """What ``undertow baseline register`` does, under the namespace of ``prefix``."""
    import redis

    from agents.app import namespace
    from agents.registry import BaselineRegistry
    from agents.settings import Settings, Topics

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=10)
    try:
        ns = namespace(Settings(topics=Topics(prefix)))
        BaselineRegistry(client, namespace=ns).register(baseline)
    finally:
        client.close()


@dataclass
class Stream:
    """Prediction events (wire form) in event-time order, and what was drifted."""

    events: list[dict[str, Any]]
    t0: float
    #: Event seconds per wall-clock second at which `publish` paces it (None: at once).
    speed: float | None = None
    drift_from: float | None = None
    drift_to: float | None = None

    @property
    def timestamps(self) -> list[float]:
        return [e["timestamp"] for e in self.events]


def make_events(
    timestamps_ms: Sequence[int],
    seed: int,
    *,
    drifting: Callable[[int], bool] = lambda t: False,
    id_prefix: str = "p",
) -> list[dict[str, Any]]:
    """One event per timestamp; while ``drifting(ts_ms)``, amount's mean shifts (×2.5) and
    merchant's mix changes (travel booms, an unseen category appears)."""
    rng = np.random.default_rng(seed)
    n = len(timestamps_ms)
    amount = rng.lognormal(3.5, 0.6, n)
    age = np.round(rng.normal(40, 12, n).clip(18, 95), 1)
    income = np.round(rng.gamma(4.0, 12_000.0, n), 0)
    tenure = rng.integers(1, 121, n)
    merchant = rng.choice(MERCHANTS, n, p=MERCHANT_P)
    drift_merchant = rng.choice(DRIFT_MERCHANT, n, p=DRIFT_MERCHANT_P)
    channel = rng.choice(CHANNELS, n, p=CHANNEL_P)
    latency = np.round(rng.gamma(2.0, 15.0, n), 3)
    drift = np.array([drifting(t) for t in timestamps_ms], dtype=bool)
    amount = np.round(np.where(drift, amount * 2.5, amount), 2).astype(np.float64)
    merchant = np.where(drift, drift_merchant, merchant)
    score = np.round(_score(amount, age, income, tenure), 6)
    events = []
    for i, t in enumerate(timestamps_ms):
        events.append(
            {
                "prediction_id": f"{id_prefix}{i:06d}",
                "model": MODEL,
                "model_version": VERSION,
                "timestamp": t / 1000,
                "features": {
                    "amount": float(amount[i]),
                    "age": float(age[i]),
                    "income": float(income[i]),
                    "tenure": int(tenure[i]),
                    "merchant": str(merchant[i]),
                    "channel": str(channel[i]),
                },
                "prediction": float(score[i]),
                "latency_ms": float(latency[i]),
            }
        )
    return events


def drift_stream(
    *,
    n: int = 10_560,
    span_s: int = 44,
    speed: float = 4.0,
    drift_s: tuple[int, int] = (16, 30),
    seed: int = 7,
) -> Stream:
    """``n`` events evenly over ``span_s`` seconds of event time, with amount and merchant
    drifting over ``drift_s`` (seconds after the start), to be published at ``speed`` times
    real time by `publish`, starting now and ending with event time near the wall clock.

    Why not all at once: a compressed stream turns a moment of consumer skew between
    partitions into many seconds of event time, and a partition that had been idle (so left
    out of the combined watermark) then finds its first events behind the others' watermark
    by more than a window: too late. At 4x, 2 s of skew would be needed to lose an event.
    """
    slide_ms = SLIDE_S * 1000
    wall0_ms = round(time.time() * 1000)
    start = wall0_ms + round(span_s * 1000 / speed) - span_s * 1000
    t0 = start - start % slide_ms  # windows hold the same events whenever the test runs
    step = span_s * 1000 / n
    stamps = [t0 + int(i * step) for i in range(n)]
    lo, hi = t0 + drift_s[0] * 1000, t0 + drift_s[1] * 1000
    events = make_events(stamps, seed, drifting=lambda t: lo <= t < hi)
    return Stream(events, t0 / 1000, speed, drift_from=lo / 1000, drift_to=hi / 1000)


def publish(
    bootstrap: str,
    prefixes: str | Sequence[str],
    stream: Stream | Sequence[Mapping[str, Any]],
    batch_size: int = 50,
) -> int:
    """Send events with undertow's own publisher (validated, micro-batched envelopes) to
    every prefix's predictions topic. A `Stream` with a speed is paced: an event at event
    time ``t`` leaves ``(t - t0) / speed`` seconds after publishing started."""
    from agents.producer import PredictionPublisher
    from agents.settings import Topics

    events = stream.events if isinstance(stream, Stream) else list(stream)
    speed = stream.speed if isinstance(stream, Stream) else None
    t0 = stream.t0 if isinstance(stream, Stream) else 0.0
    names = [prefixes] if isinstance(prefixes, str) else list(prefixes)
    with contextlib.ExitStack() as stack:
        publishers = [
            stack.enter_context(
                PredictionPublisher(
                    bootstrap, topics=Topics(p), batch_size=batch_size, linger_s=0.05
                )
            )
            for p in names
        ]
        begin = time.monotonic()
        for i, event in enumerate(events):
            if speed and i % 50 == 0:
                ahead = (event["timestamp"] - t0) / speed - (time.monotonic() - begin)
                if ahead > 0:
                    time.sleep(min(ahead, 1.0))
            for publisher in publishers:
                publisher.send_raw("predictions", dict(event))
    return len(events)


def rows_of(events: Sequence[Mapping[str, Any]], indices: Iterable[int]) -> dict[str, list[Any]]:
    """The columns of the chosen events, as ``undertow check`` reads them from a file."""
    chosen = [events[i] for i in indices]
    columns: dict[str, list[Any]] = {"prediction_id": [e["prediction_id"] for e in chosen]}
    columns["timestamp"] = [e["timestamp"] for e in chosen]
    for name in (*NUMERIC, *CATEGORICAL):
        columns[name] = [e["features"].get(name) for e in chosen]
    columns["prediction"] = [e["prediction"] for e in chosen]
    return columns


# ---------------------------------------------------------------------------- statistics


def numpy_counts(
    reference: NumericReference | CategoricalReference, values: Sequence[Any]
) -> np.ndarray:
    """Counts of ``values`` over a reference's PSI bins, in plain numpy.

    Numeric: ``x < e0``, ``[e_i, e_i+1)`` … ``[e_k-2, e_k-1]`` (the last inner bin closed),
    ``x > e_k-1``. Categorical: the reference categories, then one bin for unseen values.
    """
    if isinstance(reference, NumericReference):
        edges = np.asarray(reference.coarse_edges, dtype=np.float64)
        x = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        x = x[~np.isnan(x)]
        idx = np.searchsorted(edges, x, side="right")
        idx[x == edges[-1]] = edges.size - 1
        return np.bincount(idx, minlength=edges.size + 1).astype(np.float64)
    cats = [str(c) for c in reference.histogram.categories]
    position = {c: i for i, c in enumerate(cats)}
    out = np.zeros(len(cats) + 1, dtype=np.float64)
    for v in values:
        if v is not None:
            out[position.get(str(v), len(cats))] += 1
    return out


def numpy_psi(
    reference: NumericReference | CategoricalReference,
    reference_values: Sequence[Any],
    values: Sequence[Any],
) -> float:
    """PSI = sum (c - r) ln(c / r), proportions clipped to [1e-4, 1] (DESIGN.md), with both
    sides counted from raw values by `numpy_counts`: only the bins come from the baseline."""
    ref = numpy_counts(reference, reference_values)
    cur = numpy_counts(reference, values)
    r = np.clip(ref / ref.sum(), 1e-4, 1.0)
    c = np.clip(cur / cur.sum(), 1e-4, 1.0)
    return float(np.sum((c - r) * np.log(c / r)))


def wait_until(
    condition: Callable[[], bool], timeout: float, interval: float = 0.25, what: str = "condition"
) -> float:
    """Poll ``condition`` until true; returns the seconds it took (AssertionError on timeout)."""
    start = time.monotonic()
    for _ in range(int(timeout / interval) + 2):
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start >= timeout:
            break
        time.sleep(interval)
    if condition():
        return time.monotonic() - start
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(worker: WorkerProcess, timeout: float = 5.0) -> Samples:
    """The worker's ``/metrics`` samples, keyed by (name, labels); see `sample`."""
    import re

    url = f"http://{LOOPBACK}:{worker.port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    out: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        pairs = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels))
        out[(name, pairs)] = float(value)
    return out


def sample(metrics: Samples, name: str, **labels: str) -> float | None:
    """One sample of a `scrape`, or None."""
    return metrics.get((name, frozenset(labels.items())))


# ---------------------------------------------------------------------------- scaling


class Fleet:
    """The workers of one deployment, started one step at a time (scale out, crash, replace,
    scale in), each with its own name (``<tag>-w<i>``, numbered across every `add`) and log.

    Leaving the ``with`` block stops every worker still running (SIGTERM to all first, so they
    leave the group together, then `WorkerProcess.stop`), pass or fail; when the block ends
    with an exception, the tail of each worker's log is printed.
    """

    def __init__(
        self,
        *,
        kafka: str,
        redis_url: str,
        prefix: str,
        log_dir: Path,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.kafka, self.redis_url, self.prefix = kafka, redis_url, prefix
        self.log_dir = Path(log_dir)
        self.settings = dict(settings or {})
        self.tag = prefix.rstrip(".").rsplit("-", 1)[-1]
        self.members: list[WorkerProcess] = []

    def add(self, count: int = 1) -> list[WorkerProcess]:
        """Start ``count`` more workers (not waiting for them: see `wait_assignment`)."""
        group = []
        for _ in range(count):
            name = f"{self.tag}-w{len(self.members)}"
            worker = WorkerProcess(
                kafka=self.kafka,
                redis_url=self.redis_url,
                prefix=self.prefix,
                log_path=self.log_dir / f"{name}.log",
                settings=self.settings,
                name=name,
            )
            self.members.append(worker)
            group.append(worker.start())
        return group

    def live(self) -> list[WorkerProcess]:
        return [w for w in self.members if w.alive()]

    def close(self) -> None:
        for w in self.members:
            w.terminate()
        for w in self.members:
            w.stop()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()
        if exc_type is not None:
            for w in self.members:
                print(w.log_tail(60))


def namespace_of(prefix: str) -> str:
    """The Redis namespace of a deployment with topic prefix ``prefix``."""
    from agents.app import namespace
    from agents.settings import Settings, Topics

    return namespace(Settings(topics=Topics(prefix)))


@dataclass(frozen=True)
class ProgressSample:
    """Every partition's state in Redis at one moment (``at``: ``time.monotonic()``)."""

    at: float
    #: ``{ns}:offsets``: the next offset to read, written with the panes in one MULTI/EXEC.
    offsets: dict[int, int]
    #: ``{ns}:heartbeats``: wall clock (ms) of the owner's last flush of the partition.
    heartbeats: dict[int, int]

    def advanced(self, since: ProgressSample, partitions: Iterable[int]) -> bool:
        """Whether every one of ``partitions`` has an offset beyond its offset in ``since``."""
        return all(self.offsets.get(p, -1) > since.offsets.get(p, -1) for p in partitions)


class PartitionProgress:
    """Samples every partition's Redis offset and heartbeat every ``interval`` seconds, in a
    background thread, for as long as the ``with`` block lasts.

    Only a partition's owner writes its offset, and the offset only moves when the owner has
    put newly read events into Redis; the owner writes the heartbeat at every flush, the first
    one right after the assignment included. So under a steady stream, "the offset advanced
    after X" means "some worker owns the partition and is counting again", whoever it is,
    with a resolution of ``interval`` plus the flush interval (``UNDERTOW_FLUSH_INTERVAL``).
    """

    def __init__(self, redis_url: str, prefix: str, interval: float = 0.1) -> None:
        import redis

        self.ns = namespace_of(prefix)
        self.interval = interval
        self.samples: list[ProgressSample] = []
        self.error: BaseException | None = None
        self._client = redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=5)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="partition-progress", daemon=True)

    def read(self) -> ProgressSample:
        """One sample, now (also what the background thread records)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hgetall(f"{self.ns}:offsets")
        pipe.hgetall(f"{self.ns}:heartbeats")
        offsets, beats = pipe.execute()
        return ProgressSample(
            time.monotonic(),
            {int(k): int(v) for k, v in offsets.items()},
            {int(k): int(v) for k, v in beats.items()},
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sample = self.read()
            except Exception as exc:  # reported by `wait_for`; keep sampling
                self.error = exc
            else:
                with self._lock:
                    self.samples.append(sample)
            self._stop.wait(self.interval)

    def wait_for(
        self,
        done: Callable[[ProgressSample], bool],
        *,
        since: float,
        timeout: float,
        what: str = "the partitions",
    ) -> ProgressSample:
        """The first sample taken at or after ``since`` (monotonic) for which ``done`` holds,
        waiting up to ``timeout`` seconds for it; AssertionError after that."""
        deadline = time.monotonic() + timeout
        seen = 0
        for _ in range(int(timeout / (self.interval / 2)) + 10):
            with self._lock:
                fresh = self.samples[seen:]
            seen += len(fresh)
            for s in fresh:
                if s.at >= since and done(s):
                    return s
            if time.monotonic() >= deadline or not self._thread.is_alive():
                break
            time.sleep(self.interval / 2)
        last = self.samples[-1] if self.samples else None
        raise AssertionError(
            f"timed out after {timeout:g} s waiting for {what}; last sample: {last}; "
            f"last sampling error: {self.error!r}"
        )

    def stalls(self, since: float, until: float) -> dict[int, float]:
        """For each partition, the longest time its offset stood still around [since, until]:
        the longest gap between two consecutive advances (or from the last advance to
        ``until``) that overlaps the interval, whole, even if it began before ``since``."""
        with self._lock:
            samples = list(self.samples)
        out: dict[int, float] = {}
        partitions = {p for s in samples for p in s.offsets}
        for p in sorted(partitions):
            moves = [
                b.at
                for a, b in itertools.pairwise(samples)
                if b.at <= until and b.offsets.get(p) != a.offsets.get(p)
            ]
            gaps = [b - a for a, b in itertools.pairwise(moves) if b > since]
            if moves and moves[-1] < until:
                gaps.append(until - moves[-1])
            out[p] = max(gaps, default=0.0)
        return out

    def __enter__(self) -> PartitionProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._client.close()
