"""One way to open, list and write URIs: local paths, ``file://`` URIs and ``s3://bucket/key``.

Everything is built on :mod:`pyarrow.fs`, so the ``(filesystem, path)`` pairs returned by :func:`resolve`
can be handed straight to Ray Data (``filesystem=`` arguments) and Parquet writers.

S3 settings:

* endpoint: ``StorageOptions.endpoint_url``, else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``, else
  AWS itself. An ``http://`` endpoint (MinIO, moto, a local gateway) switches the transport to plain HTTP.
* region: ``StorageOptions.region``, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else ``us-east-1``.
* credentials: only the standard AWS chain (environment, ``~/.aws`` files, instance metadata), resolved by
  the AWS SDK inside pyarrow. This module never reads, stores or prints them.
* transient errors (throttling, 5xx, dropped connections) are retried with exponential backoff by
  pyarrow's ``AwsStandardS3RetryStrategy(max_attempts)``.
* an endpoint that cannot be connected to at all would be retried for many seconds by every request:
  :func:`check_endpoint`, called by each command's driver checks, says so at once.

Filesystem objects are cached per process by (endpoint, region, max_attempts): each one holds an S3 client
with its connection pool, so opening thousands of videos reuses a handful of them.

A missing object, directory or bucket raises :class:`StorageError` naming the URI and the reason.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyarrow
import pyarrow.fs as pafs

__all__ = [
    "StorageError",
    "UriError",
    "StorageOptions",
    "resolve",
    "open_input",
    "open_output",
    "read_bytes",
    "read_lines",
    "write_bytes",
    "exists",
    "list_files",
    "join",
    "absolute",
    "check_endpoint",
]

_DEFAULT_REGION = "us-east-1"


class UriError(Exception):
    """An error about one URI (or option): ``str()`` is ``"{uri}: {reason}"``, and both survive pickling, e.g.
    out of a Ray worker. The project's errors that name what was wrong derive from it."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(f"{uri}: {reason}")
        self.uri = uri
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.uri, self.reason))


class StorageError(UriError, OSError):
    """A URI could not be read, written or listed."""


@dataclass(frozen=True)
class StorageOptions:
    """How to reach S3; local paths ignore it. ``None`` fields fall back to the standard AWS variables."""

    endpoint_url: str | None = None
    region: str | None = None
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")


def resolve(uri: str, options: StorageOptions | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem serving ``uri`` and the path to give it (``bucket/key`` for S3, absolute locally)."""
    scheme, path = _split(uri)
    if scheme == "s3":
        options = options or StorageOptions()
        return _s3_filesystem(_endpoint(options)[1], _region(options), options.max_attempts), path
    return _local_filesystem(), path


def check_endpoint(uris: Iterable[str | None], options: StorageOptions | None = None) -> None:
    """Raise :class:`StorageError` at once when any of ``uris`` is on S3 and the S3 endpoint cannot be connected
    to (refused, unresolvable, timed out), instead of the minutes the first real request would spend retrying.

    One request (``HeadBucket`` of the first S3 URI's bucket) through the same client settings, not retried,
    with short timeouts; a missing bucket or a denied request is left to the real requests, which name it.
    The error's ``uri`` names where the endpoint came from: ``--endpoint-url URL`` (``StorageOptions``), the
    environment variable, or AWS's regional endpoint.
    """
    bucket = next((u[len("s3://"):].split("/", 1)[0] for u in uris if u and u.startswith("s3://")), None)
    if not bucket:
        return
    options = options or StorageOptions()
    source, endpoint = _endpoint(options)
    probe = pafs.S3FileSystem(region=_region(options), retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
                              connect_timeout=3, request_timeout=30, **_endpoint_kwargs(endpoint))
    try:
        probe.get_file_info(bucket)
    except (OSError, pyarrow.ArrowException) as error:
        message = str(error)
        if "NETWORK_CONNECTION" not in message and "curlCode" not in message:
            return  # reached, and answered: the real request says what is wrong
        cause = message.split("Details: ", 1)[-1] if "Details: " in message else message
        where = f"{source} {endpoint}" if endpoint else f"the AWS S3 endpoint of region {_region(options)}"
        raise StorageError(where, f"cannot connect to the S3 endpoint ({cause}); check the URL and that the "
                                  "server is running and reachable from here") from None


def open_input(uri: str, options: StorageOptions | None = None) -> pyarrow.NativeFile:
    """A seekable file-like reader. On S3 each ``read`` is one ranged GET: wrap it in a buffer for small reads."""
    filesystem, path = resolve(uri, options)
    with _errors(uri, "cannot open for reading"):
        _require_file(filesystem, path, uri)
        return filesystem.open_input_file(path)


def open_output(uri: str, options: StorageOptions | None = None) -> pyarrow.NativeFile:
    """A writable stream replacing ``uri`` on close; parent directories of local paths are created."""
    filesystem, path = resolve(uri, options)
    with _errors(uri, "cannot open for writing"):
        if isinstance(filesystem, pafs.LocalFileSystem):
            filesystem.create_dir(posixpath.dirname(path), recursive=True)
        return filesystem.open_output_stream(path)


def read_bytes(uri: str, options: StorageOptions | None = None) -> bytes:
    """The whole content of ``uri`` (for small files: manifests, configs, checkpoints)."""
    with open_input(uri, options) as f, _errors(uri, "read failed"):
        return f.read()


def read_lines(uri: str, options: StorageOptions | None = None) -> list[tuple[int, str]]:
    """The non-blank lines of the UTF-8 text file ``uri`` with their 1-based numbers (a BOM, CRLF and surrounding
    spaces dropped): class lists, split lists."""
    text = read_bytes(uri, options).decode("utf-8-sig")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def write_bytes(uri: str, data: bytes, options: StorageOptions | None = None) -> None:
    """Write ``data`` to ``uri``, replacing it."""
    with _errors(uri, "write failed"):
        with open_output(uri, options) as f:
            f.write(data)


def exists(uri: str, options: StorageOptions | None = None) -> bool:
    """Whether ``uri`` names an existing file or directory (an S3 prefix with objects under it counts)."""
    filesystem, path = resolve(uri, options)
    with _errors(uri, "cannot check existence"):
        return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def list_files(
    prefix: str, suffixes: tuple[str, ...] | None = None, options: StorageOptions | None = None
) -> list[str]:
    """Every file under the directory or S3 prefix ``prefix``, recursively, as sorted URIs in ``prefix``'s form.

    ``suffixes`` keeps only names ending in one of them, ignoring case (``(".mp4",)`` keeps ``A.MP4``).
    A prefix that is a file lists just that file; one that does not exist raises :class:`StorageError`.
    """
    filesystem, path = resolve(prefix, options)
    with _errors(prefix, "cannot list"):
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise StorageError(prefix, _missing(filesystem, path, "no such directory or prefix"))
        if info.type == pafs.FileType.File:
            infos = [info]
        else:
            infos = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
    wanted = tuple(s.lower() for s in suffixes) if suffixes else None
    paths = sorted(
        i.path for i in infos if i.type == pafs.FileType.File and (wanted is None or i.path.lower().endswith(wanted))
    )
    return [_to_uri(prefix, p) for p in paths]


def absolute(uri: str) -> str:
    """``uri`` with a plain local path made absolute against this process's working directory; ``s3://`` and
    ``file://`` URIs as they are. Paths that go to Ray Train workers must be absolute: Ray Train runs its
    workers in a working directory of its own, where a relative path names nothing."""
    if "://" in uri:
        return uri
    return os.path.abspath(os.path.expanduser(uri))


def join(base: str, *parts: str) -> str:
    """Append path components with ``/``: ``join("s3://b/x", "y")`` is ``"s3://b/x/y"``.

    Leading and trailing slashes of ``parts`` are dropped, so a part never restarts the path at the root
    (unlike :func:`os.path.join`).
    """
    pieces = [p.strip("/") for p in parts if p.strip("/")]
    if not pieces:
        return base
    return (base if base.endswith("/") else base + "/") + "/".join(pieces)


# --- helpers ---------------------------------------------------------------------------------------------


def _split(uri: str) -> tuple[str, str]:
    """("s3", "bucket/key") or ("file", "/absolute/path")."""
    if uri.startswith("s3://"):
        path = uri[len("s3://") :].strip("/")
        if not path:
            raise StorageError(uri, "an s3:// URI needs a bucket name")
        if any(segment in ("", ".", "..") for segment in path.split("/")):
            raise StorageError(uri, "a key with '.', '..' or empty path segments cannot be addressed (pyarrow's S3 "
                                    "client rewrites such paths); rename the object")
        return "s3", path
    if "://" in uri and not uri.startswith("file://"):
        raise StorageError(uri, "unsupported scheme; use a local path, file:// or s3://")
    if uri.startswith("file://"):
        parsed = urlsplit(uri)
        if parsed.netloc not in ("", "localhost"):
            raise StorageError(uri, f"file:// URIs must name a local path, not host {parsed.netloc!r}")
        uri = parsed.path
    return "file", os.path.abspath(os.path.expanduser(uri))


def _to_uri(prefix: str, path: str) -> str:
    """``path`` from the filesystem, written the way ``prefix`` was (s3://, file:// or a plain path)."""
    if prefix.startswith("s3://"):
        return "s3://" + path
    if prefix.startswith("file://"):
        return "file://" + path
    return path


@functools.lru_cache(maxsize=None)
def _s3_filesystem(endpoint: str | None, region: str, max_attempts: int) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(
        region=region, retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=max_attempts),
        **_endpoint_kwargs(endpoint),
    )


def _endpoint(options: StorageOptions) -> tuple[str, str | None]:
    """The S3 endpoint URL (None: AWS's) and where it was set: ``--endpoint-url`` or an environment variable."""
    for source, value in (("--endpoint-url", options.endpoint_url),
                          ("AWS_ENDPOINT_URL_S3", os.environ.get("AWS_ENDPOINT_URL_S3")),
                          ("AWS_ENDPOINT_URL", os.environ.get("AWS_ENDPOINT_URL"))):
        if value:
            return source, value
    return "AWS", None


def _region(options: StorageOptions) -> str:
    return options.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or _DEFAULT_REGION


def _endpoint_kwargs(endpoint: str | None) -> dict:
    """``S3FileSystem`` arguments for ``endpoint`` (none for AWS's)."""
    if not endpoint:
        return {}
    parsed = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise StorageError(endpoint, "an S3 endpoint must look like http(s)://host[:port]")
    return {"endpoint_override": parsed.netloc + parsed.path.rstrip("/"), "scheme": parsed.scheme}


@functools.lru_cache(maxsize=1)
def _local_filesystem() -> pafs.LocalFileSystem:
    return pafs.LocalFileSystem()


def _require_file(filesystem: pafs.FileSystem, path: str, uri: str) -> None:
    kind = filesystem.get_file_info(path).type
    if kind == pafs.FileType.NotFound:
        raise StorageError(uri, _missing(filesystem, path, "no such file or object"))
    if kind == pafs.FileType.Directory:
        raise StorageError(uri, "is a directory, not a file")


def _missing(filesystem: pafs.FileSystem, path: str, reason: str) -> str:
    """``reason``, or "no such bucket" when the S3 bucket itself is missing."""
    if isinstance(filesystem, pafs.S3FileSystem):
        bucket = path.split("/", 1)[0]
        if filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
            return f"no such bucket {bucket!r}"
    return reason


@contextlib.contextmanager
def _errors(uri: str, what: str) -> Iterator[None]:
    """Re-raise pyarrow/OS errors as StorageError(uri, "<what>: <cause>"), naming missing buckets plainly."""
    try:
        yield
    except StorageError:
        raise
    except (OSError, pyarrow.ArrowException) as error:
        message = str(error)
        if "NoSuchBucket" in message or "bucket does not exist" in message.lower():
            reason = f"no such bucket {urlsplit(uri).netloc!r}" if uri.startswith("s3://") else "no such bucket"
        elif isinstance(error, FileNotFoundError):
            reason = "no such file or object"
        elif "ACCESS_DENIED" in message or "AccessDenied" in message:
            reason = f"{what}: access denied (403): the credentials lack permission for it"
        else:
            reason = f"{what}: {message}"
        raise StorageError(uri, reason) from error
