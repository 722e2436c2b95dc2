"""A local S3 server for tests: moto's server (the S3 REST API over real HTTP on 127.0.0.1), with the
standard AWS variables pointing at it, so s3fs, botocore and quilt_hf take the same code path as with AWS."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator

import pytest

_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@contextlib.contextmanager
def local_s3() -> Iterator[str]:
    """Start the server, point the AWS variables at it and create a bucket; yields ``s3://BUCKET``."""
    moto_server = pytest.importorskip("moto.server", reason="the test extra (moto[s3], flask, flask-cors) is not installed")
    s3fs = pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is not installed")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    saved = {name: os.environ.get(name) for name in _VARIABLES}
    try:
        host, port = server.get_host_and_port()
        os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="testing",
                          AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        s3fs.S3FileSystem.clear_instance_cache()  # an instance made before holds another endpoint
        bucket = f"quilt-{uuid.uuid4().hex[:8]}"
        s3fs.S3FileSystem().mkdir(bucket)
        yield f"s3://{bucket}"
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()
