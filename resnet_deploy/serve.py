"""``serve``: an artifact behind a real NVIDIA Triton Inference Server, through PyTriton.

PyTriton (``pip install "resnet-deploy[serve]"``) bundles the ``tritonserver`` binary and runs it
as a child process; each model instance is a Triton Python-backend stub that hands batches to an
inference function in this process, which runs the artifact's runner (ONNX Runtime, TensorRT or
PyTorch). Triton does the rest: HTTP/REST and gRPC (KServe v2 protocol), the dynamic batcher,
health and readiness endpoints, Prometheus metrics. Any standard ``tritonclient`` talks to it.

Traps handled here (all seen with PyTriton 0.7.0, see the README):

- A pyenv-built Python beside a system libpython: the backend stub loads the system library and
  model loading fails with ``'_thread.RLock' object has no attribute '_recursion_count'``. The
  running interpreter's ``LIBDIR`` goes first on ``LD_LIBRARY_PATH`` before Triton starts.
- A busy port: tritonserver exits, but PyTriton polls the port for 120 s, and if another Triton
  owns it PyTriton loads (and on exit unloads) its model *there*. Ports are checked first.
- SIGTERM would kill Python without stopping Triton (its workspace stays behind): SIGINT and
  SIGTERM both take the clean path, and tritonserver is stopped before ``serve`` returns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError, MissingDependencyError
from .errors import ServeError as ServeError
from .runtime.base import Runner
from .system import dist_version
from .triton import check_instances, check_model_name, check_queue_delay, parse_batch_list, triton_max_batch


def fix_libpython_path(env: dict[str, str] | None = None) -> str | None:
    """Put this interpreter's shared-library folder first on ``LD_LIBRARY_PATH`` (in ``env``,
    default ``os.environ``), so Triton's Python-backend stub loads *this* libpython. Returns the
    folder, or None for a statically linked interpreter."""
    target = os.environ if env is None else env
    libdir = sysconfig.get_config_var("LIBDIR")
    if not libdir or not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    parts = [p for p in target.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != libdir]
    target["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *parts])
    return str(libdir)


def busy_ports(address: str, ports: list[int]) -> list[int]:
    """The ports in ``ports`` already in use on ``address``; an address this machine cannot listen
    on at all is a ConfigError."""
    import errno

    try:
        infos = socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"--address {address}: {e.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    busy = []
    for port in ports:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT leftover is not busy
            try:
                s.bind((sockaddr[0], port, *sockaddr[2:]))
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise ConfigError(f"cannot listen on {address} port {port}: {e.strerror}") from None
                busy.append(port)
    return busy


def _require_pytriton() -> None:
    try:
        import pytriton.triton  # noqa: F401  (the import is the check)
    except ImportError:
        raise MissingDependencyError("nvidia-pytriton", extra="serve", purpose="serving with Triton") from None


@dataclass
class ServeOptions:
    artifact: str
    name: str | None = None
    address: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int | None = None
    max_queue_delay_us: int = 100
    preferred_batch: list[int] = field(default_factory=list)
    instances: int = 1
    backend: str = "auto"
    depth: int | str | None = None  # the architecture of a .pth checkpoint
    threads: int | None = None  # per instance; default: the cores divided among the instances
    log_file: str | None = None  # tritonserver's log (default: a temp file, removed after a clean stop)
    log_verbose: int = 0


@dataclass
class ServerInfo:
    model: str
    artifact: str
    runner: dict[str, Any]
    input: dict[str, Any]
    output: dict[str, Any]
    max_batch_size: int
    max_queue_delay_us: int
    preferred_batch: list[int]
    instances: int
    http: str
    grpc: str
    metrics: str
    log_file: str
    libpython: str | None
    pytriton_version: str
    startup_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class TritonServer:
    """A running Triton server for one artifact. ``start`` returns once the model is ready;
    ``wait`` blocks until SIGINT/SIGTERM (or Triton dies); ``stop`` is idempotent."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = o = options
        ports = [o.http_port, o.grpc_port, o.metrics_port]
        if len(set(ports)) != 3 or any(not 0 < p < 65536 for p in ports):
            raise ConfigError(
                f"--http-port/--grpc-port/--metrics-port must be 3 distinct ports in 1-65535, got {ports}"
            )
        check_instances(o.instances)
        check_queue_delay(o.max_queue_delay_us)
        if o.threads is not None and o.threads <= 0:
            raise ConfigError(f"--threads {o.threads}: must be a positive integer")
        self._triton: Any = None
        self._runners: list[Runner] = []
        self._tmp: str | None = None
        self._stopped = False
        self.info: ServerInfo | None = None

    # ----------------------------------------------------------------------------------- runners

    def _open_runners(self) -> list[Runner]:
        from .runtime.registry import open_backend
        from .system import cpu_count

        o = self.options
        threads = o.threads or max(1, cpu_count() // o.instances)
        runners = [open_backend(o.artifact, o.backend, threads=threads, depth=o.depth) for _ in range(o.instances)]
        first = runners[0]
        if first.fixed_batch is not None:
            raise ConfigError(
                f"{Path(o.artifact).name} has a fixed batch of {first.fixed_batch}: serving needs a dynamic batch "
                "axis (re-export with --batch dynamic)"
            )
        for r in runners:
            r.__enter__()
            self._runners.append(r)
        return runners

    def _infer_func(self, runner: Runner, out_name: str, out_dtype: np.dtype[Any]) -> Callable[..., Any]:
        from pytriton.decorators import batch

        @batch  # type: ignore[untyped-decorator]
        def infer(**inputs: NDArray[Any]) -> dict[str, NDArray[Any]]:
            (x,) = inputs.values()
            return {out_name: np.ascontiguousarray(runner.infer_all(x), dtype=out_dtype)}

        wrapped: Callable[..., Any] = infer
        return wrapped

    # ------------------------------------------------------------------------------- lifecycle

    def start(self) -> ServerInfo:
        o = self.options
        _require_pytriton()
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

        from .models.labels import class_names

        busy = busy_ports(o.address, [o.http_port, o.grpc_port, o.metrics_port])
        if busy:
            raise ConfigError(
                f"port {', '.join(map(str, busy))} on {o.address} is in use (another server?): choose free "
                "--http-port/--grpc-port/--metrics-port"
            )
        t0 = time.perf_counter()
        try:
            runners = self._open_runners()
            first = runners[0]
            meta = first.metadata
            name = o.name or meta.model or "resnet"
            check_model_name(name)
            num_classes = len(class_names(meta))
            preferred = parse_batch_list(o.preferred_batch)
            profile = (getattr(first, "min_batch", 1), first.max_batch) if first.max_batch is not None else None
            max_batch = triton_max_batch(o.max_batch, profile, preferred)
            pre = first.preprocess
            in_shape = tuple(int(d) for d in pre.input_shape(1)[1:])
            # The artifact's own I/O types (an --fp16-io model takes and gives fp16, as in a shipped
            # repository), so a client written for this server works against Triton on GPUs too.
            in_dtype = np.dtype(np.float16 if meta.input_dtype == "float16" else pre.dtype)
            out_dtype = np.dtype(np.float16 if meta.output_dtype == "float16" else np.float32)
            in_name, out_name = meta.input_name, meta.output_name

            fix = fix_libpython_path()  # before Triton copies the environment for tritonserver
            logging.getLogger("pytriton").setLevel(logging.WARNING)
            log_file = o.log_file
            if log_file is None:
                self._tmp = tempfile.mkdtemp(prefix="resnet-deploy-triton-")
                log_file = os.path.join(self._tmp, "tritonserver.log")
            config = TritonConfig(
                http_address=o.address,
                http_port=o.http_port,
                grpc_address=o.address,
                grpc_port=o.grpc_port,
                metrics_address=o.address,
                metrics_port=o.metrics_port,
                allow_gpu_metrics=False,
                log_verbose=o.log_verbose,
                log_file=Path(log_file),
                exit_on_error=True,
                strict_readiness=True,
            )
            # Keep PyTriton's token on the endpoints that change the server (model load/unload,
            # shared memory, tracing, logging); statistics stay readable for monitoring.
            security = TritonSecurityConfig(
                restricted_endpoints=["shared-memory", "model-repository", "trace", "logging"]
            )
            self._triton = Triton(config=config, security_config=security)
            self._triton.bind(
                model_name=name,
                infer_func=[self._infer_func(r, out_name, out_dtype) for r in runners],
                inputs=[Tensor(name=in_name, dtype=in_dtype.type, shape=in_shape)],
                outputs=[Tensor(name=out_name, dtype=out_dtype.type, shape=(num_classes,))],
                config=ModelConfig(
                    max_batch_size=max_batch,
                    batcher=DynamicBatcher(
                        max_queue_delay_microseconds=o.max_queue_delay_us, preferred_batch_size=preferred or None
                    ),
                ),
                strict=True,
            )
            with self._startup_watchdog(Path(log_file)):
                self._triton.run()
        except BaseException:
            self.stop()
            raise
        host = o.address if ":" not in o.address else f"[{o.address}]"
        self.info = ServerInfo(
            model=name,
            artifact=str(Path(o.artifact).resolve()) if Path(o.artifact).exists() else o.artifact,
            runner=first.describe(),
            input={"name": in_name, "dtype": in_dtype.name, "shape": [-1, *in_shape], "format": pre.input_format},
            output={"name": out_name, "dtype": out_dtype.name, "shape": [-1, num_classes]},
            max_batch_size=max_batch,
            max_queue_delay_us=o.max_queue_delay_us,
            preferred_batch=preferred,
            instances=o.instances,
            http=f"http://{host}:{o.http_port}",
            grpc=f"{host}:{o.grpc_port}",
            metrics=f"http://{host}:{o.metrics_port}/metrics",
            log_file=str(log_file),
            libpython=fix,
            pytriton_version=dist_version("nvidia-pytriton") or "unknown",
            startup_seconds=round(time.perf_counter() - t0, 2),
        )
        return self.info

    @contextlib.contextmanager
    def _startup_watchdog(self, log_file: Path) -> Iterator[None]:
        """PyTriton polls a dead server for 120 s: interrupt ``run`` as soon as tritonserver exits.
        The interrupt is a SIGINT to ourselves, so SIGINT must not be ignored meanwhile (it is, for
        a command started with '&' from a script); and gevent, which tritonclient's HTTP client
        runs on, must not print a traceback when Ctrl-C lands inside it."""
        done = threading.Event()
        died: list[bool] = []
        main = threading.current_thread() is threading.main_thread()
        old_handler = signal.signal(signal.SIGINT, signal.default_int_handler) if main else None
        with contextlib.suppress(Exception):
            import gevent

            hub = gevent.get_hub()
            if not issubclass(KeyboardInterrupt, hub.NOT_ERROR):
                hub.NOT_ERROR = (*hub.NOT_ERROR, KeyboardInterrupt)

        def watch() -> None:
            while not done.wait(0.25):
                server = getattr(self._triton, "_triton_server", None)
                running = getattr(server, "_tritonserver_running_cmd", None)
                if server is not None and running is not None and not server.is_alive():
                    died.append(True)
                    signal.raise_signal(signal.SIGINT)  # KeyboardInterrupt in the main thread
                    return

        thread = threading.Thread(target=watch, daemon=True, name="triton-startup-watchdog")
        thread.start()
        try:
            yield
        except KeyboardInterrupt:
            if died:
                raise ServeError(f"tritonserver exited while starting: {_last_error(log_file)}") from None
            raise
        except Exception as e:  # PyTriton's own errors: model load failures, timeouts
            raise ServeError(f"Triton did not start: {_one_line(str(e))} ({_last_error(log_file)})") from None
        finally:
            done.set()
            thread.join(timeout=1)
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)

    def wait(self) -> str:
        """Block until SIGINT/SIGTERM (returns the signal's name) or until Triton dies (ServeError)."""
        if self._triton is None:
            raise RuntimeError("start() the server first")
        received: list[str] = []

        def on_signal(signum: int, _frame: object) -> None:
            if received:
                return  # already stopping: a second Ctrl-C must not cut the shutdown short
            received.append(signal.Signals(signum).name)
            raise KeyboardInterrupt

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                self._triton.serve(monitoring_period_s=1.0)  # returns on KeyboardInterrupt, after stopping
            except KeyboardInterrupt:
                pass
            self.stop()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        if not received:
            raise ServeError(
                f"Triton stopped on its own: {_last_error(Path(self.info.log_file) if self.info else None)}"
            )
        return received[0]

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._triton is not None:
            with contextlib.suppress(Exception):
                self._triton.stop()
        for r in self._runners:
            with contextlib.suppress(Exception):
                r.__exit__(None, None, None)
        self._runners.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if lines else "no message")[:300]


def _last_error(log_file: Path | None) -> str:
    """The last error line of tritonserver's log, for a one-line message."""
    if log_file is None or not log_file.is_file():
        return "no tritonserver log"
    lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    benign = ("CudaDriverHelper has not been initialized", "Unable to allocate pinned system memory")
    lines = [line for line in lines if not any(b in line for b in benign)]
    errors = [line for line in lines if line.startswith("E") or "error" in line.lower()]
    return _one_line((errors or lines or ["empty tritonserver log"])[-1])
