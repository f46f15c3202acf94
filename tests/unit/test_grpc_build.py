"""The stub generator (`agora.grpc.build`) and the metadata parsing of `agora.grpc.auth`.

Generation runs the real protoc (grpcio-tools) on the repository's protos into a
temporary package and imports the result, as a fresh clone's `make` does.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from agora.grpc import build
from agora.grpc.auth import bearer_token, peer_ip


def test_generates_an_importable_package_with_rewritten_imports(tmp_path: Path) -> None:
    target = tmp_path / "grpc_gen"
    build.generate(target, build.PROTOS_DIR)
    grpc_module = target / "messaging" / "v1" / "messaging_pb2_grpc.py"
    source = grpc_module.read_text()
    assert "from agora.grpc_gen.messaging.v1 import messaging_pb2" in source
    assert "from agora.messaging" not in source
    assert (target / "messaging" / "v1" / "messaging_pb2.pyi").is_file()
    directories = [target, *(d for d in target.rglob("*") if d.is_dir())]
    assert all((d / "__init__.py").is_file() for d in directories)
    assert build.is_current(target, build.PROTOS_DIR)
    assert not list(tmp_path.glob(".grpc_gen-*"))  # no temporary directory left behind

    # The message module stands alone: load it from the generated file.
    path = target / "auth" / "v1" / "users_pb2.py"
    spec = importlib.util.spec_from_file_location("generated_users_pb2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop("generated_users_pb2", None)
    spec.loader.exec_module(module)
    assert module.User(id="1", login="a", name="A").login == "a"


def test_a_changed_proto_makes_the_stubs_stale(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    shutil.copytree(build.PROTOS_DIR, protos)
    target = tmp_path / "grpc_gen"
    assert not build.is_current(target, protos)  # missing
    build.generate(target, protos)
    assert build.is_current(target, protos)
    users = protos / "agora" / "auth" / "v1" / "users.proto"
    users.write_text(users.read_text() + "\n// changed\n")
    assert not build.is_current(target, protos)
    build.generate(target, protos)  # over an existing package: swapped in whole
    assert build.is_current(target, protos)


def test_no_protos_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(build.StubsMissing):
        build.generate(tmp_path / "out", tmp_path / "nothing")


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ((("authorization", "Bearer abc.def"),), "abc.def"),
        ((("Authorization", "bearer   abc.def  "),), "abc.def"),
        ((("authorization", b"Bearer abc"),), "abc"),
        ((("x-other", "1"), ("authorization", "Bearer t")), "t"),
        ((("authorization", "Basic abc"),), None),
        ((("authorization", "Bearer"),), None),
        ((("authorization", "Bearer    "),), None),
        ((), None),
        (None, None),
    ],
)
def test_bearer_token(metadata: object, token: str | None) -> None:
    assert bearer_token(metadata) == token  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("peer", "ip"),
    [
        ("ipv4:10.1.2.3:5000", "10.1.2.3"),
        ("ipv6:%5B::1%5D:5000", "::1"),
        ("ipv6:[2001:db8::7]:443", "2001:db8::7"),
        ("unix:/tmp/socket", None),
        ("", None),
        (None, None),
    ],
)
def test_peer_ip(peer: str | None, ip: str | None) -> None:
    assert peer_ip(peer) == ip
