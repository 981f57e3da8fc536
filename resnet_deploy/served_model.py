"""The client side of a live Triton server: a served model as its metadata and config describe it
(``describe_model``), and a load of client threads sending it requests (``LoadPhase``).

Both protocols answer the same JSON here (gRPC's protobuf answers are asked for as JSON, whose
64-bit counters come as strings and are read back as integers). Used by ``loadgen``'s sweep and by
the serving benchmarks.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError, MissingDependencyError, ServeError

PROTOCOLS = ("grpc", "http")
_STATS_KEYS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


def parse_url(url: str, protocol: str) -> str:
    """``HOST:PORT`` from ``host:port``, ``[v6]:port``, ``http://host:port`` (http) or
    ``grpc://host:port`` (grpc). Triton's HTTP and gRPC ports differ; ``serve`` prints both."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {protocol!r}: choose grpc or http")
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if sep:
        if scheme.lower() not in ("http", "grpc") or (scheme.lower() == "http") != (protocol == "http"):
            raise ConfigError(
                f"--server {url!r}: a {scheme}:// address with --protocol {protocol}; give HOST:PORT "
                "(Triton's HTTP and gRPC ports differ: serve prints both)"
            )
        text = rest.rstrip("/")
    host, _, port = text.rpartition(":")
    bad = not host or "/" in text or (":" in host and not (host.startswith("[") and host.endswith("]")))
    if bad or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--server {url!r}: give HOST:PORT, e.g. 127.0.0.1:8001 (gRPC) or 127.0.0.1:8000 (HTTP)")
    return f"{host}:{int(port)}"


def _one_line(error: BaseException | str, limit: int = 300) -> str:
    text = error if isinstance(error, str) else (str(error) or type(error).__name__)
    if isinstance(error, BaseException) and hasattr(error, "message") and callable(error.message):
        text = str(error.message() or text)  # tritonclient's InferenceServerException
    return " ".join(text.split())[:limit]


# ------------------------------------------------------------------------------- the served model


@dataclass
class ServedModel:
    """A model on a live server, as its metadata and config describe it, and how to call it."""

    url: str  # HOST:PORT
    protocol: str
    name: str
    input_name: str
    datatype: str  # Triton's: FP32, UINT8, ...
    dims: tuple[int, ...]  # one image's shape (without the batch axis)
    max_batch_size: int  # 0: the model takes no batch axis
    format: str  # the config's input format (FORMAT_NCHW, FORMAT_NHWC, FORMAT_NONE)
    outputs: list[str]
    timeout_s: float = 30.0
    config: dict[str, Any] = field(default_factory=dict)  # a summary of the model's config
    server: dict[str, Any] = field(default_factory=dict)  # the server's name, version, extensions

    def _module(self) -> Any:
        if self.protocol == "grpc":
            import tritonclient.grpc as mod
        else:
            import tritonclient.http as mod
        return mod

    def client(self) -> Any:
        """A new client object: one per thread."""
        mod = self._module()
        if self.protocol == "grpc":
            return mod.InferenceServerClient(self.url)
        t = self.timeout_s
        return mod.InferenceServerClient(self.url, connection_timeout=t, network_timeout=t)

    def random_batch(self, batch: int, rng: np.random.Generator) -> NDArray[Any]:
        """Random inputs of the model's type: uniform over the range of integer types, standard
        normal floats (finite in fp16)."""
        from tritonclient.utils import triton_to_np_dtype

        dtype = np.dtype(triton_to_np_dtype(self.datatype))
        shape = ((batch,) if self.max_batch_size > 0 else ()) + self.dims
        if dtype == np.bool_:
            return rng.integers(0, 2, shape).astype(np.bool_)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            return rng.integers(max(info.min, -128), min(info.max, 255), shape, endpoint=True).astype(dtype)
        return rng.standard_normal(shape).astype(dtype)

    def infer_input(self, x: NDArray[Any]) -> Any:
        inp = self._module().InferInput(self.input_name, list(x.shape), self.datatype)
        inp.set_data_from_numpy(x)
        return inp

    def infer(self, client: Any, inp: Any, batch: int) -> None:
        """One request; an answer without the first output, or of the wrong batch, is a failure."""
        if self.protocol == "grpc":
            result = client.infer(self.name, [inp], client_timeout=self.timeout_s)
        else:
            result = client.infer(self.name, [inp])
        y = result.as_numpy(self.outputs[0]) if self.outputs else None
        if self.outputs and (y is None or (self.max_batch_size > 0 and y.shape[:1] != (batch,))):
            raise ValueError(f"answer without {self.outputs[0]!r} of batch {batch}")

    def statistics(self, client: Any) -> tuple[dict[str, int], dict[int, int]]:
        """Triton's cumulative statistics of this model (summed over versions): counts and
        nanoseconds, and executions per executed batch size."""
        data = _query(client, self.protocol, "get_inference_statistics", self.name, timeout_s=self.timeout_s)
        totals: dict[str, int] = {}
        hist: dict[int, int] = {}

        def add(key: str, value: Any) -> None:
            totals[key] = totals.get(key, 0) + int(value or 0)

        for ms in data.get("model_stats", []):
            if ms.get("name") != self.name:
                continue
            add("inference_count", ms.get("inference_count"))
            add("execution_count", ms.get("execution_count"))
            for key in _STATS_KEYS:
                part = ms.get("inference_stats", {}).get(key, {})
                add(f"{key}_count", part.get("count"))
                add(f"{key}_ns", part.get("ns"))
            for b in ms.get("batch_stats", []):
                infer = b.get("compute_infer", {})
                size = int(b.get("batch_size", 0))
                hist[size] = hist.get(size, 0) + int(infer.get("count", 0) or 0)
                add("exec_compute_infer_ns", infer.get("ns"))
        return totals, hist


def _query(client: Any, protocol: str, method: str, *args: Any, timeout_s: float) -> Any:
    """A tritonclient query as JSON for both protocols (gRPC answers protobuf unless asked)."""
    if protocol == "grpc":
        return getattr(client, method)(*args, as_json=True, client_timeout=timeout_s)
    return getattr(client, method)(*args)


def _served_models(client: Any, protocol: str, timeout_s: float) -> list[str]:
    """The ready models: from the repository index, or (where that endpoint is restricted, as
    ``serve`` does) from the statistics of every model."""
    try:
        index = _query(client, protocol, "get_model_repository_index", timeout_s=timeout_s)
        entries = index.get("models", []) if isinstance(index, dict) else index
        return sorted({e["name"] for e in entries if e.get("state", "READY") == "READY"})
    except Exception:
        with contextlib.suppress(Exception):
            stats = _query(client, protocol, "get_inference_statistics", "", timeout_s=timeout_s)
            return sorted({m["name"] for m in stats.get("model_stats", [])})
    return []


def _model_ready(client: Any, protocol: str, model: str, timeout_s: float) -> bool:
    try:
        if protocol == "grpc":
            return bool(client.is_model_ready(model, client_timeout=timeout_s))
        return bool(client.is_model_ready(model))
    except Exception:
        return False


def describe_model(url: str, model: str, *, protocol: str = "grpc", timeout_s: float = 30.0) -> ServedModel:
    """Ask the server at ``url`` about ``model``: a ConfigError when no server answers, the model
    is not ready there, or it has not exactly one input of a fixed per-image shape."""
    host_port = parse_url(url, protocol)
    probe = ServedModel(host_port, protocol, model, "", "", (), 0, "", [], timeout_s)
    where = f"{host_port} ({protocol})"
    try:
        import tritonclient.grpc
        import tritonclient.http  # noqa: F401
    except ImportError:
        raise MissingDependencyError("tritonclient", extra="serve", purpose="talking to a Triton server") from None
    try:
        client = probe.client()
        live = (
            client.is_server_live(client_timeout=min(timeout_s, 10.0))
            if protocol == "grpc"
            else client.is_server_live()
        )
    except Exception as e:
        raise ConfigError(
            f"no Triton server answers at {where}: {_one_line(e)} (check the port: Triton's HTTP and gRPC ports "
            "differ, serve prints both)"
        ) from None
    try:
        if not live:
            raise ConfigError(f"the Triton server at {where} is not live")
        if not _model_ready(client, protocol, model, timeout_s):
            served = _served_models(client, protocol, timeout_s)
            raise ConfigError(
                f"the server at {where} has no ready model {model!r}; it serves: {', '.join(served) or 'no model'}"
            )
        try:
            meta = _query(client, protocol, "get_model_metadata", model, timeout_s=timeout_s)
            config = _query(client, protocol, "get_model_config", model, timeout_s=timeout_s)
            config = config.get("config", config)  # gRPC wraps it
            server = _query(client, protocol, "get_server_metadata", timeout_s=timeout_s)
        except Exception as e:
            raise ServeError(f"the server at {where} did not describe model {model!r}: {_one_line(e)}") from None
    finally:
        with contextlib.suppress(Exception):
            client.close()
    return _model_from(probe, meta, config, server)


def _model_from(
    probe: ServedModel, meta: dict[str, Any], config: dict[str, Any], server: dict[str, Any]
) -> ServedModel:
    from tritonclient.utils import triton_to_np_dtype

    inputs, name = meta.get("inputs", []), probe.name
    if len(inputs) != 1:
        names = ", ".join(str(i.get("name")) for i in inputs)
        raise ConfigError(f"model {name!r} has {len(inputs)} inputs ({names}): bench --server drives one-input models")
    inp = inputs[0]
    max_batch = int(config.get("max_batch_size", 0) or 0)
    shape = [int(d) for d in inp.get("shape", [])]
    dims = tuple(shape[1:] if max_batch > 0 else shape)
    datatype = str(inp.get("datatype"))
    if datatype in ("BYTES", "BF16") or triton_to_np_dtype(datatype) is None:
        raise ConfigError(f"model {name!r} takes {datatype}: bench --server sends numeric tensors only")
    if any(d < 0 for d in dims):
        raise ConfigError(
            f"model {name!r} input {inp.get('name')!r} has variable dims {list(dims)}: give it fixed ones"
        )
    fmt = next(
        (str(i.get("format", "FORMAT_NONE")) for i in config.get("input", []) if i.get("name") == inp["name"]), ""
    )
    batching = config.get("dynamic_batching")
    summary = {
        "name": name,
        "platform": config.get("platform") or None,
        "backend": config.get("backend") or None,
        "max_batch_size": max_batch,
        "input": {"name": inp["name"], "datatype": datatype, "shape": shape, "format": fmt or "FORMAT_NONE"},
        "outputs": [
            {"name": o.get("name"), "datatype": o.get("datatype"), "shape": o.get("shape")}
            for o in meta.get("outputs", [])
        ],
        "dynamic_batching": None
        if batching is None
        else {
            "max_queue_delay_us": int(batching.get("max_queue_delay_microseconds", 0) or 0),
            "preferred_batch_size": [int(b) for b in batching.get("preferred_batch_size", [])],
        },
        "instance_group": [
            {"count": int(g.get("count", 1) or 1), "kind": g.get("kind", "KIND_AUTO")}
            for g in config.get("instance_group", [])
        ],
    }
    return ServedModel(
        url=probe.url,
        protocol=probe.protocol,
        name=name,
        input_name=str(inp["name"]),
        datatype=datatype,
        dims=dims,
        max_batch_size=max_batch,
        format=fmt or "FORMAT_NONE",
        outputs=[str(o.get("name")) for o in meta.get("outputs", [])],
        timeout_s=probe.timeout_s,
        config=summary,
        server={k: server.get(k) for k in ("name", "version", "extensions")},
    )


# ------------------------------------------------------------------------------------ the clients


class LoadPhase:
    """``clients`` threads, each sending requests on a client object of its own one after another
    (so that many are in flight), cycling through its own inputs, until ``stop`` or ``limit``
    requests each. Each thread makes its client and closes it: tritonclient's clients are not
    thread-safe, and an HTTP client (gevent) works only in the thread that made it.
    ``records[i]``: (completion time, latency ms, error or None) per request of thread i."""

    def __init__(
        self, model: ServedModel, clients: int, inputs: Sequence[NDArray[Any]], *, limit: int | None = None
    ) -> None:
        self.model = model
        self.limit = limit
        self.batch = int(inputs[0].shape[0]) if model.max_batch_size > 0 else 1
        self._inputs = list(inputs)
        self._stop = threading.Event()
        self._ready = threading.Barrier(clients + 1)
        self.records: list[list[tuple[float, float, str | None]]] = [[] for _ in range(clients)]
        self.setup_errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._work, args=(i,), daemon=True, name=f"loadgen-{i}") for i in range(clients)
        ]

    def start(self) -> float:
        """Start the threads; returns once every client is made, when the first requests go out."""
        for t in self._threads:
            t.start()
        with contextlib.suppress(threading.BrokenBarrierError):
            self._ready.wait(self.model.timeout_s + 5.0)
        return time.perf_counter()

    def _work(self, i: int) -> None:
        out = self.records[i]
        client: Any = None
        try:
            client = self.model.client()
            inputs = [self.model.infer_input(x) for x in self._inputs]  # built once, read by this thread only
        except Exception as e:
            self.setup_errors.append(f"{type(e).__name__}: {_one_line(e)}")
            self._ready.abort()
            return
        with contextlib.suppress(threading.BrokenBarrierError):
            self._ready.wait()
        n = 0
        while not self._stop.is_set() and (self.limit is None or n < self.limit):
            t0 = time.perf_counter()
            error: str | None = None
            try:
                self.model.infer(client, inputs[(i + n) % len(inputs)], self.batch)
            except Exception as e:
                error = f"{type(e).__name__}: {_one_line(e)}"
            t1 = time.perf_counter()
            out.append((t1, (t1 - t0) * 1e3, error))
            n += 1
        with contextlib.suppress(Exception):
            client.close()

    def stop(self) -> None:
        """Send no new requests; wait for those in flight (each bounded by the client timeout).
        Threads still waiting to start (Ctrl-C while the clients were made) are released."""
        self._stop.set()
        self._ready.abort()
        self.join()

    def join(self, *, until_done: bool = False) -> None:
        """Wait for the threads: as long as the requests in flight may take (one deadline for all
        of them), or (``until_done``) until each has sent its ``limit`` requests."""
        deadline = time.perf_counter() + self.model.timeout_s + 5.0
        for t in self._threads:
            if t.ident is not None:  # started
                t.join(None if until_done else max(0.0, deadline - time.perf_counter()))

    def all_records(self) -> list[tuple[float, float, str | None]]:
        return sorted((r for part in self.records for r in part), key=lambda r: r[0])
