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
- One HTTP request can kill tritonserver: a KServe v2 JSON input whose ``shape`` claims billions
  of elements makes the HTTP frontend of the bundled Triton (before 2.59) throw ``std::bad_alloc``
  or ``std::length_error`` and abort; there is no size limit to set in that build. ``wait``
  supervises tritonserver: when it dies from under us, the cause is read from its output and log
  and Triton is started again on the same ports (a few seconds), a bounded number of times.
- An exception in the inference function would reach the client as a Python traceback with this
  machine's file paths: the client gets one line (the exception's type and message), the log the rest;
  PyTriton's own stub, which would add its traceback, is sent to Triton with that answer rewritten
  (``serve_supervisor.quiet_stub_errors``).
- PyTriton's workspace (its copy of tritonserver, its sockets) would go to ``~/.cache/pytriton`` and
  stay there after a SIGKILL: it is put in a temp folder of ours (``.resnet-deploy-serve.<pid>.*.tmp``),
  and the next ``serve`` removes such folders whose process is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
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
from typing import Any, ParamSpec, TypeVar

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError, MissingDependencyError
from .errors import ServeError as ServeError
from .reports import sweep_stale_temps, temp_prefix
from .runtime.base import Runner, check_threads
from .serve_supervisor import SOCKET_PATH_MAX, _one_line, quiet_stub_errors, remove_shared_memory_of, socket_room
from .serve_supervisor import explain_death as explain_death
from .system import dist_version
from .triton import check_instances, check_model_name, check_queue_delay, parse_batch_list, triton_max_batch

log = logging.getLogger(__name__)
_P = ParamSpec("_P")
TEMP_LABEL = "resnet-deploy-serve"  # our temp folder: .resnet-deploy-serve.<pid>.<random>.tmp
_R = TypeVar("_R")


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
    max_restarts: int = 5  # restarts of a tritonserver that died, within restart_window_s; 0: none
    restart_window_s: float = 60.0


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
    restarts: int = 0  # times tritonserver died and was started again

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class TritonServer:
    """A running Triton server for one artifact. ``start`` returns once the model is ready;
    ``wait`` blocks until SIGINT/SIGTERM, starting Triton again when it dies from under us (at
    most ``max_restarts`` times within ``restart_window_s``); ``stop`` is idempotent."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = o = options
        ports = [o.http_port, o.grpc_port, o.metrics_port]
        if len(set(ports)) != 3 or any(not 0 < p < 65536 for p in ports):
            raise ConfigError(
                f"--http-port/--grpc-port/--metrics-port must be 3 distinct ports in 1-65535, got {ports}"
            )
        check_instances(o.instances)
        check_queue_delay(o.max_queue_delay_us)
        check_threads(o.threads)
        check_restart_bound(o.max_restarts, o.restart_window_s)
        self._triton: Any = None
        self._bind: dict[str, Any] = {}  # Triton.bind's arguments, for a restart
        self._log_file: Path | None = None
        self._log_offset = 0  # where this tritonserver's part of the log begins
        self._restart_times: list[float] = []
        self._launches = 0  # tritonserver launches so far (each gets its own PyTriton workspace)
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

        def run(x: NDArray[Any]) -> dict[str, NDArray[Any]]:
            return {out_name: np.ascontiguousarray(runner.infer_all(x), dtype=out_dtype)}

        @batch  # type: ignore[untyped-decorator]
        def infer(**inputs: NDArray[Any]) -> dict[str, NDArray[Any]]:
            (x,) = inputs.values()
            return client_safe(run)(x)

        wrapped: Callable[..., Any] = infer
        return wrapped

    # ------------------------------------------------------------------------------- lifecycle

    def start(self) -> ServerInfo:
        o = self.options
        _require_pytriton()
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

        from .models.labels import class_names

        self._check_ports()
        t0 = time.perf_counter()
        try:
            runners = self._open_runners()
            first = runners[0]
            meta = first.metadata
            name = (meta.model or "resnet") if o.name is None else o.name
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
            self._make_temp_folder(name)
            self._log_file = Path(o.log_file or os.path.join(str(self._tmp), "tritonserver.log"))
            self._bind = dict(
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
            self._launch()
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
            log_file=str(self._log_file),
            libpython=fix,
            pytriton_version=dist_version("nvidia-pytriton") or "unknown",
            startup_seconds=round(time.perf_counter() - t0, 2),
        )
        return self.info

    def _check_ports(self) -> None:
        o = self.options
        busy = busy_ports(o.address, [o.http_port, o.grpc_port, o.metrics_port])
        if busy:
            raise ConfigError(
                f"port {', '.join(map(str, busy))} on {o.address} is in use (another server?): choose free "
                "--http-port/--grpc-port/--metrics-port"
            )

    def _make_temp_folder(self, model: str) -> None:
        """Our temp folder, for PyTriton's workspaces and the default log; first remove those of
        ``serve`` processes that are gone (SIGKILL, power loss), which nothing else would."""
        folder = tempfile.gettempdir()
        swept = sweep_stale_temps(folder, only=f".{TEMP_LABEL}.")
        if swept:
            shm = remove_shared_memory_of([int(n.rsplit(".", 3)[1]) for n in swept])
            log.info("removed what serve processes that are gone left: %s", ", ".join(swept + shm))
        self._tmp = tempfile.mkdtemp(prefix=temp_prefix(TEMP_LABEL), suffix=".tmp", dir=folder)
        too_long = socket_room(os.path.join(self._tmp, "w9"), model, self.options.instances)
        if too_long is not None:
            raise ConfigError(
                f"PyTriton's socket {too_long} would be {len(too_long.encode())} bytes, over the "
                f"{SOCKET_PATH_MAX} a Unix socket path allows: set TMPDIR to a shorter folder or use a shorter --name"
            )

    def _launch(self) -> None:
        """Start tritonserver with the model bound (at start, and again after it died)."""
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

        o = self.options
        assert self._log_file is not None and self._tmp is not None
        self._log_offset = self._log_file.stat().st_size if self._log_file.is_file() else 0
        config = TritonConfig(
            http_address=o.address,
            http_port=o.http_port,
            grpc_address=o.address,
            grpc_port=o.grpc_port,
            metrics_address=o.address,
            metrics_port=o.metrics_port,
            allow_gpu_metrics=False,
            log_verbose=o.log_verbose,
            log_file=self._log_file,
            exit_on_error=True,
            strict_readiness=True,
        )
        # Keep PyTriton's token on the endpoints that change the server (model load/unload,
        # shared memory, tracing, logging); statistics stay readable for monitoring.
        security = TritonSecurityConfig(restricted_endpoints=["shared-memory", "model-repository", "trace", "logging"])
        workspace = os.path.join(self._tmp, f"w{self._launches % 10}")  # PyTriton wants a folder that is not there
        self._launches += 1
        shutil.rmtree(workspace, ignore_errors=True)  # a dead launch's leftovers (its tritonserver is gone)
        self._triton = Triton(config=config, security_config=security, workspace=workspace)
        try:
            self._triton.bind(**self._bind)
            quiet_stub_errors(getattr(getattr(self._triton, "_model_manager", None), "models", []))
            with self._startup_watchdog():
                self._triton.run()
        except BaseException:
            with contextlib.suppress(Exception):
                self._triton.stop()
            raise

    @contextlib.contextmanager
    def _startup_watchdog(self) -> Iterator[None]:
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
                raise ServeError(f"tritonserver exited while starting: {self.death_cause()}") from None
            raise
        except Exception as e:  # PyTriton's own errors: model load failures, timeouts
            raise ServeError(f"Triton did not start: {_one_line(str(e))} ({self.death_cause()})") from None
        finally:
            done.set()
            thread.join(timeout=1)
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)

    def wait(self, ready: Callable[[], None] | None = None) -> str:
        """Block until SIGINT/SIGTERM (returns the signal's name). When tritonserver dies from
        under us it is started again (see ``_restart``); a ServeError once that is given up.
        ``ready`` (announcing the server) runs once the signals are ours: a client that stops
        the server as soon as it reads the announcement gets a clean stop, not an interrupt."""
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
            if ready is not None:
                ready()
            while not received:
                while self._triton.is_alive():  # tritonserver and the model's proxy backends
                    time.sleep(0.2)
                self._restart()
        except KeyboardInterrupt:
            if not received:  # a SIGINT while Triton was starting again
                received.append(signal.SIGINT.name)
        finally:
            self.stop()
            for s, h in old.items():
                signal.signal(s, h)
        return received[0]

    def _restart(self) -> None:
        """Triton died (a crash, a kill, a dead model backend): quote the cause from its output,
        clean up what PyTriton left, and start it again on the same ports, unless it already died
        ``max_restarts`` times within ``restart_window_s`` (a ServeError)."""
        o = self.options
        died_at = time.monotonic()
        cause = self.death_cause()
        old = self._triton
        with contextlib.suppress(Exception):
            old.stop()  # idempotent; stops a tritonserver that is still up when only a backend died
        workspace = getattr(getattr(old, "_workspace", None), "path", None)
        while workspace is not None and Path(workspace).exists() and time.monotonic() - died_at < 10:
            time.sleep(0.05)  # PyTriton cleans up in its exit callback's thread
        self._restart_times = [t for t in self._restart_times if died_at - t < o.restart_window_s]
        if len(self._restart_times) >= o.max_restarts:
            gave_up = (
                f"; not restarted: it died {o.max_restarts + 1} times within {o.restart_window_s:g} s"
                if o.max_restarts
                else ""
            )
            raise ServeError(f"tritonserver died: {cause}{gave_up}")
        try:
            self._check_ports()
            self._launch()
        except ConfigError as e:
            raise ServeError(f"tritonserver died: {cause}; cannot restart it: {e}") from None
        except ServeError as e:
            raise ServeError(f"tritonserver died: {cause}; restarting failed: {e}") from None
        self._restart_times.append(died_at)
        seconds = time.monotonic() - died_at
        if self.info is not None:
            self.info.restarts += 1
        count = self.info.restarts if self.info is not None else len(self._restart_times)
        log.warning("tritonserver died: %s; restarted in %.1f s (restart %d)", cause, seconds, count)

    def death_cause(self) -> str:
        """Why the current tritonserver stopped, in one line: its exit status and the line of its
        console output or log that explains it. Read before anything is cleaned up."""
        server: Any = getattr(self._triton, "_triton_server", None)
        console = ""
        code: int | None = None
        with contextlib.suppress(Exception):
            console = str(server.logs())
        with contextlib.suppress(Exception):
            running = server._tritonserver_running_cmd
            if running is not None and not running.is_alive():
                code = int(running.process.exit_code)
        text = ""
        if self._log_file is not None and self._log_file.is_file():
            with contextlib.suppress(OSError), self._log_file.open("rb") as f:
                f.seek(self._log_offset if self._log_offset <= self._log_file.stat().st_size else 0)
                text = f.read().decode("utf-8", errors="replace")
        return explain_death(text + "\n" + console, code)

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


# --------------------------------------------------------------------- what the client is told


def check_restart_bound(max_restarts: int, restart_window_s: float) -> None:
    """``--max-restarts`` (>= 0; 0: never restart) and ``--restart-window-s`` (> 0, not nan)."""
    if max_restarts < 0:
        raise ConfigError(f"--max-restarts {max_restarts}: must be >= 0 (0: never restart)")
    if not restart_window_s > 0:  # also nan
        raise ConfigError(f"--restart-window-s {restart_window_s}: must be a positive number of seconds")


class InferenceFailed(Exception):
    """What a client is told when inference fails: one line, the original exception's type and
    message, with no traceback and no file paths (the server's log keeps the detail)."""

    __module__ = "builtins"  # "InferenceFailed: ...", not this package's module path

    @property
    def __traceback__(self) -> None:  # PyTriton formats the client's message from this
        return None

    @__traceback__.setter
    def __traceback__(self, _tb: object) -> None:
        pass


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][\w.@+-]+){2,}(?::\d+)?")


def client_message(error: BaseException) -> str:
    """``Type: first line of the message``, with file paths replaced by ``<path>``, at most 500
    characters: what a client may see of an error raised on the server."""
    text = " ".join(_PATH.sub("<path>", str(error).strip().splitlines()[0] if str(error).strip() else "").split())
    return f"{type(error).__name__}: {text}"[:500] if text else type(error).__name__


def client_safe(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``fn`` whose exceptions reach the client as one ``InferenceFailed`` line; the full
    traceback goes to this module's log."""

    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            log.warning("inference failed: %s", client_message(e), exc_info=True)
            raise InferenceFailed(client_message(e)) from None

    return call
