"""`agora cluster`'s plan: its services are the registry's, and --instances parses."""

from __future__ import annotations

import pytest

from agora.runtime import cluster
from agora.runtime.registry import SERVICES


def test_cluster_knows_every_service_of_the_registry() -> None:
    assert set(cluster.SERVICES) == set(SERVICES)


def test_instances_option() -> None:
    assert cluster._counts(None) == dict.fromkeys(cluster.SERVICES, 2)
    assert cluster._counts(["3", "messaging=0"]) == {
        "auth": 3, "publications": 3, "social": 3, "messaging": 0,
    }  # fmt: skip
    with pytest.raises(SystemExit, match="SERVICE=N"):
        cluster._counts(["chat=2"])


def test_layout_ports_are_deploy_readme_s() -> None:
    assert cluster.layout_port("auth", 1) == 8101
    assert cluster.layout_port("messaging", 2) == 8402
    assert cluster.layout_port("messaging", 1, grpc=True) == 50401
