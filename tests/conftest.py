"""Shared fixtures: a real local Ray runtime and a real S3 endpoint on loopback.

The S3 endpoint is moto's server mode on 127.0.0.1, reached through the same boto3/pyarrow code a
user's S3 or MinIO would use; only the endpoint URL differs. Test credentials are set before any
Ray worker starts so that workers inherit them through the ordinary AWS credential chain.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

# Fake credentials for the loopback S3 server; set at import so Ray workers inherit them.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key.lstrip('/')}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server on loopback with one bucket; AWS_ENDPOINT_URL points at it for the session."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    previous = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    s3 = S3Server(endpoint_url=endpoint, bucket="raycondi-test")
    s3.client().create_bucket(Bucket=s3.bucket)
    try:
        yield s3
    finally:
        if previous is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = previous
        server.stop()


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[None]:
    """A real local Ray runtime with 2 CPUs, started once per test module.

    pytest builds session fixtures before module ones, so a test that asks for both ``s3_server``
    and ``ray_runtime`` starts Ray after AWS_ENDPOINT_URL is set and its workers inherit it.
    """
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
