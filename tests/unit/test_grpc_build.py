"""The stub generator (`agora.grpc.build`) and the metadata parsing of `agora.grpc.auth`.

Generation runs the real protoc (grpcio-tools) on the repository's protos into a
temporary package and imports the result, as a fresh clone's `make` does. At import,
`ensure_stubs` regenerates only in a checkout with grpcio-tools: an installed wheel (no
protos beside it, no grpcio-tools) uses the stubs it ships. `.ci/wheel-check` builds and
serves such a wheel.
"""

from __future__ import annotations

import importlib.util
import logging
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


@pytest.fixture
def no_grpcio_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in an installed wheel: grpc_tools cannot be imported (nor found). Ask for it
    after `checkout`, which generates with it."""
    monkeypatch.setitem(sys.modules, "grpc_tools", None)
    monkeypatch.setitem(sys.modules, "grpc_tools.protoc", None)


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the protos and the stubs generated from them."""
    protos = tmp_path / "protos"
    shutil.copytree(build.PROTOS_DIR, protos)
    target = tmp_path / "grpc_gen"
    build.generate(target, protos)
    return target, protos


def change_a_proto(protos: Path) -> None:
    users = protos / "agora" / "auth" / "v1" / "users.proto"
    users.write_text(users.read_text() + "\n// changed\n")


def test_a_checkout_regenerates_stale_stubs_at_import(checkout: tuple[Path, Path]) -> None:
    target, protos = checkout
    assert build.ensure_stubs(target, protos) is False  # current: nothing to do
    change_a_proto(protos)
    assert build.ensure_stubs(target, protos) is True
    assert build.is_current(target, protos)


def test_an_installed_wheel_uses_the_stubs_it_ships(
    checkout: tuple[Path, Path], no_grpcio_tools: None, tmp_path: Path
) -> None:
    target, _ = checkout
    stamp = (target / build.STAMP).read_text()
    assert not build.can_generate(tmp_path / "no-protos")
    assert build.ensure_stubs(target, tmp_path / "no-protos") is False
    assert (target / build.STAMP).read_text() == stamp


def test_a_checkout_without_grpcio_tools_keeps_stale_stubs_and_says_so(
    checkout: tuple[Path, Path], no_grpcio_tools: None, caplog: pytest.LogCaptureFixture
) -> None:
    target, protos = checkout
    change_a_proto(protos)
    assert not build.can_generate(protos)
    with caplog.at_level(logging.WARNING, logger="agora.grpc"):
        assert build.ensure_stubs(target, protos) is False
    assert "older than" in caplog.text
    assert not build.is_current(target, protos)  # left alone


@pytest.mark.usefixtures("no_grpcio_tools")
def test_missing_stubs_and_no_generator_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(build.StubsMissing, match="wheel"):
        build.ensure_stubs(tmp_path / "grpc_gen", build.PROTOS_DIR)


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
