"""Fixtures for tests that need the running local lab (`python -m lab up`)."""
from __future__ import annotations

import boto3
import pytest
from labutil import lab_cmd, read_env


@pytest.fixture(scope="session")
def lab():
    """The lab, up for the session (brought up if needed; left up for the next make target)."""
    lab_cmd("up")
    return read_env()


@pytest.fixture
def lab_aws(lab):
    def client(service: str):
        return boto3.client(service, endpoint_url=lab["AWS_ENDPOINT_URL"], region_name=lab["AWS_DEFAULT_REGION"],
                            aws_access_key_id="lab", aws_secret_access_key="lab")
    return client
