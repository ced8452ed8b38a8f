"""A private PostgreSQL cluster for tests: `initdb` in a temporary folder, the server on a free port of 127.0.0.1 only,
a login role with a random password, stopped and deleted afterwards.

Use the fixture in a test module (the import is what makes it available there):

    from postgres import postgres_url  # noqa: F401 - a fixture

    def test_something(postgres_url):  # "postgresql+psycopg2://mlflow:PASSWORD@127.0.0.1:PORT/mlflow"
        ...

As root, the cluster runs as the `postgres` user (PostgreSQL refuses to run as root), in a folder that user owns.
The programs come from PATH or Debian's /usr/lib/postgresql/N/bin. When they are not installed the tests that use
the fixture FAIL, saying to install Debian's `postgresql` package (`.ci/run` installs it): they are never skipped.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_nb.config import UsageError
from mlops_nb.server import local_postgres


def free_port() -> int:
    "A TCP port nothing listens on now, on 127.0.0.1."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def private_postgres(database: str = "mlflow", user: str = "mlflow") -> Iterator[str]:
    "Start a new PostgreSQL cluster on a free port of 127.0.0.1; yield its URL (password included); stop and delete it."
    folder = Path(tempfile.mkdtemp(prefix="mlops-nb-pg-"))  # short (the socket's path is limited) and outside pytest's 0700 folders
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        with local_postgres(folder / "data", port=free_port(), database=database, user=user) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_or_fail() -> Iterator[str]:
    "`private_postgres`, where a cluster that cannot start (its programs missing...) fails the test with the reason: never a skip."
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(private_postgres())
        except UsageError as e:
            pytest.fail(f"cannot start a PostgreSQL cluster for the tests: {e}", pytrace=False)
        yield url


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    "A private PostgreSQL cluster for the test module: its database URL."
    with postgres_or_fail() as url:
        yield url
