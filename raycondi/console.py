"""The terminal of a ``raycondi`` command: raycondi's own lines, progress bars and errors; Ray's log lines go to
a file under the command's output.

Ray writes to a driver's terminal from three places, and :func:`quiet` turns each to the log file:

* its Python loggers, ``ray`` and ``ray.data`` (set up when they are imported, so :func:`quiet` imports them
  first): the file gets their lines, and their console handlers only the errors;
* the workers' output, which the driver prints when ``log_to_driver`` is on: ``RAY_LOG_TO_DRIVER=0`` turns it
  off (a worker's exception still reaches the driver, which raises it once: Ray Data with the task's error,
  Ray Train as ``TrainingFailedError``; a video's error becomes its row's ``error``). The workers' own logs
  stay in the Ray session's ``logs/`` folder;
* the raylet's messages to the driver (``(raylet) WARNING: 8 PYTHON worker processes have been started...``),
  printed by ``ray._private.worker.print_to_stdstream`` on the driver's thread that listens for errors: the
  ones that are warnings or information are logged instead, the rest (a worker that died, a node out of
  memory) still printed (Ray is pinned, so this one hook into its internals is tested against the version in
  use);
* its C++ core worker, which writes straight to file descriptor 2 (``core_worker.cc`` warnings). When
  standard error is a terminal, descriptor 2 is pointed at the log file and Python's ``sys.stderr`` is given
  a copy of the terminal, where raycondi's lines, tracebacks and the progress bars (tqdm writes to
  ``sys.stderr``) still go. Where standard error is a pipe or a file, a test's capture or a CI log, it is
  left alone: the C++ lines are rare there and the capture must keep working.

Python's warnings go to the file too. ``--verbose`` skips all of it. The file is
a local temporary file until the command ends, then kept under the output (local or ``s3://``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

from raycondi.video.storage import StorageOptions, join, write_bytes

__all__ = ["LOG_FOLDER", "log_uri", "quiet"]

LOG_FOLDER = "_logs"  # a leading "_": not data to the readers of the output (sink.output_files)
_RAY_LOGGERS = ("ray", "ray.data")
_NOTICES = ("WARNING", "INFO")  # how the raylet's messages that are not errors begin


def log_uri(output: str, command: str) -> str:
    """``OUTPUT/_logs/COMMAND-YYYYmmdd-HHMMSS.log``: one new file per run of a command."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return join(output, LOG_FOLDER, f"{command}-{stamp}.log")


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


@contextlib.contextmanager
def _terminal_to(path: str) -> Iterator[None]:
    """Point descriptor 2 at ``path`` and ``sys.stderr`` at a copy of the terminal (module docstring)."""
    if not (hasattr(sys.stderr, "fileno") and sys.stderr.isatty()):
        yield
        return
    sys.stderr.flush()
    terminal = os.dup(2)
    stderr = sys.stderr
    with open(path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 2)
    sys.stderr = os.fdopen(os.dup(terminal), "w", buffering=1, encoding=stderr.encoding, errors="backslashreplace")
    ours = [h for name in ("", *_RAY_LOGGERS) for h in _console_handlers(logging.getLogger(name)) if h.stream is stderr]
    for h in ours:  # raycondi's log lines (basicConfig's handler) and Ray's errors stay on the terminal
        h.setStream(sys.stderr)
    try:
        yield
    finally:
        for h in ours:
            h.setStream(stderr)
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = stderr
        os.dup2(terminal, 2)
        os.close(terminal)


@contextlib.contextmanager
def quiet(uri: str, storage: StorageOptions | None = None) -> Iterator[None]:
    """Send Ray's driver-side log lines to a local file while the block runs, then keep it as ``uri`` (local
    or ``s3://``) and say so. A command refused before Ray started has logged nothing and leaves no file."""
    os.environ.setdefault("RAY_LOG_TO_DRIVER", "0")  # read when ray is first imported
    import ray  # noqa: F401  (sets up the "ray" logger)
    import ray.data  # noqa: F401  (sets up "ray.data")

    descriptor, local = tempfile.mkstemp(prefix="raycondi-", suffix=".log")
    os.close(descriptor)
    handler = logging.FileHandler(local)
    handler.setLevel(logging.INFO)  # Ray Data's DEBUG lines stay in its own ray-data.log in the session folder
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    levels = {h: h.level for name in _RAY_LOGGERS for h in _console_handlers(logging.getLogger(name))
              if h not in logging.getLogger().handlers}  # Ray's own: not a capture a test harness shares
    for h in levels:  # the terminal keeps Ray's errors
        h.setLevel(logging.ERROR)
    for name in _RAY_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    from ray._private import worker

    printed = worker.print_to_stdstream
    raylet = logging.getLogger("ray.raylet_messages")  # into the "ray" logger's handlers

    def print_or_log(data: dict, ignore_prefix: bool) -> None:
        lines = data.get("lines") or []
        if data.get("pid") == "raylet" and lines and all(line.lstrip().startswith(_NOTICES) for line in lines):
            for line in lines:
                raylet.info(line)
        else:
            printed(data, ignore_prefix)

    worker.print_to_stdstream = print_or_log
    warnings = logging.getLogger("py.warnings")
    warnings.addHandler(handler)
    propagated, warnings.propagate = warnings.propagate, False
    logging.captureWarnings(True)
    try:
        with _terminal_to(local):
            yield
    finally:
        worker.print_to_stdstream = printed
        logging.captureWarnings(False)
        warnings.removeHandler(handler)
        warnings.propagate = propagated
        for name in _RAY_LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        for h, level in levels.items():
            h.setLevel(level)
        handler.close()
        _keep(local, uri, storage)


def _keep(local: str, uri: str, storage: StorageOptions | None) -> None:
    if os.path.getsize(local) == 0:
        os.remove(local)
        return
    try:  # one attempt: an endpoint that went away must not hold the command's exit for minutes
        with open(local, "rb") as f:
            write_bytes(uri, f.read(), dataclasses.replace(storage or StorageOptions(), max_attempts=1))
    except OSError as error:  # the job's outcome matters more than its log: keep the local copy, say where
        print(f"raycondi: Ray's log lines are in {local} (could not write {uri}: {error})", file=sys.stderr)
        return
    os.remove(local)
    print(f"raycondi: Ray's log lines are in {uri} (--verbose shows them on the terminal)", file=sys.stderr)
