"""Fixtures shared by the contract suites (the bus suite defines its own `backend`)."""

from __future__ import annotations

import pytest


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.embedded),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def backend(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """(kind, url, namespace); sync so the Redis fixtures resolve only for that kind."""
    if request.param == "memory":
        return "memory", "", ""
    url = str(request.getfixturevalue("redis_url"))
    return "redis", url, str(request.getfixturevalue("redis_namespace"))
