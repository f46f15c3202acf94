"""Generate the Python gRPC stubs from `protos/` into the git-ignored `agora.grpc_gen`.

Three callers, one generator:
- the wheel build (`setup.py`'s `build_py`, with grpcio-tools as a build requirement)
  generates them into the wheel, so an installed Agora needs neither protos nor protoc;
- `python -m agora.grpc.build` (run by `make install`, `run`, `test` and `lint`) generates
  them into the source tree of a checkout;
- `ensure_stubs()`, called when the stubs are imported, regenerates them in a checkout whose
  `.proto` files changed (so a bare `pytest` works too) when grpcio-tools is there; an
  installed wheel has no protos and uses the stubs it ships, without importing grpc_tools.
Generation is skipped when the stubs are current: the package holds a stamp with the hash
of the sources it was generated from.

protoc names modules after the proto paths (`agora/auth/v1/users.proto` ->
`agora.auth.v1.users_pb2`), which would collide with the real `agora` package; the
generated files are moved one level up (`agora.grpc_gen.auth.v1.users_pb2`) and their
`from agora.` imports rewritten to match. Generation happens in a temporary directory
next to the target and is swapped in by renames, so a reader never sees half a package.
This module needs only the standard library (grpc_tools is imported when generating):
`setup.py` loads it by path, before Agora or its dependencies are installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.util
import logging
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "grpc_gen"
PROTOS_DIR = Path(__file__).resolve().parents[3] / "protos"
STAMP = ".generated"
_IMPORT = re.compile(r"^(from|import) agora\.", re.MULTILINE)

log = logging.getLogger("agora.grpc")


class StubsMissing(RuntimeError):
    pass


def proto_files(protos_dir: Path = PROTOS_DIR) -> list[Path]:
    return sorted(protos_dir.rglob("*.proto"))


def sources_hash(protos_dir: Path = PROTOS_DIR) -> str:
    digest = hashlib.sha256()
    for path in proto_files(protos_dir):
        digest.update(path.relative_to(protos_dir).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def is_current(package_dir: Path = PACKAGE_DIR, protos_dir: Path = PROTOS_DIR) -> bool:
    stamp = package_dir / STAMP
    if not stamp.is_file():
        return False
    if not protos_dir.is_dir():  # an install without the sources: trust what is there
        return True
    return stamp.read_text().strip() == sources_hash(protos_dir)


def _run_protoc(protos_dir: Path, out_dir: Path) -> None:
    from grpc_tools import protoc  # build-time only: grpcio-tools

    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{protos_dir}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(path.relative_to(protos_dir)) for path in proto_files(protos_dir)),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {protos_dir}")


def _relocate(generated_root: Path) -> None:
    """`<tmp>/agora/x/v1/m_pb2.py` importing `agora.x` -> `<tmp>/x/v1/...` importing
    `agora.grpc_gen.x`, with an `__init__.py` in every directory."""
    for path in generated_root.rglob("*.py*"):
        text = path.read_text()
        path.write_text(_IMPORT.sub(r"\1 agora.grpc_gen.", text))
    for child in (generated_root / "agora").iterdir():
        child.rename(generated_root / child.name)
    (generated_root / "agora").rmdir()
    for directory in [generated_root, *(p for p in generated_root.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()


def generate(package_dir: Path = PACKAGE_DIR, protos_dir: Path = PROTOS_DIR) -> Path:
    """(Re)generate the package from every `.proto` under `protos_dir`."""
    if not proto_files(protos_dir):
        raise StubsMissing(f"no .proto files under {protos_dir}")
    digest = sources_hash(protos_dir)
    work = Path(tempfile.mkdtemp(prefix=".grpc_gen-", dir=package_dir.parent))
    try:
        _run_protoc(protos_dir, work)
        _relocate(work)
        (work / "py.typed").touch()
        (work / STAMP).write_text(digest + "\n")
        old = package_dir.with_name(f"{work.name}-old")
        if package_dir.exists():
            package_dir.rename(old)
        try:
            work.rename(package_dir)
        except OSError:
            # Another process swapped its own (identical) package in first: keep that.
            if not package_dir.exists() and old.exists():
                old.rename(package_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    importlib.invalidate_caches()
    return package_dir


@contextlib.contextmanager
def _generating(package_dir: Path) -> Iterator[None]:
    """One generator at a time (several workers importing a stale package at once):
    the others wait, then find the package current."""
    with open(package_dir.parent / ".grpc_gen.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def can_generate(protos_dir: Path = PROTOS_DIR) -> bool:
    """A checkout (the protos beside `src/`) with the generator (grpcio-tools) installed."""
    return protos_dir.is_dir() and importlib.util.find_spec("grpc_tools") is not None


def refresh(package_dir: Path = PACKAGE_DIR, protos_dir: Path = PROTOS_DIR) -> bool:
    """Generate the stubs if they are missing or older than the protos; True if it did."""
    if is_current(package_dir, protos_dir):
        return False
    with _generating(package_dir):
        if is_current(package_dir, protos_dir):  # another process made them while we waited
            return False
        generate(package_dir, protos_dir)
        return True


def ensure_stubs(package_dir: Path = PACKAGE_DIR, protos_dir: Path = PROTOS_DIR) -> bool:
    """At import: `refresh()` where it can; elsewhere use the stubs that are there (an
    installed wheel ships them and has no protos). True if it generated them."""
    if can_generate(protos_dir):
        return refresh(package_dir, protos_dir)
    if (package_dir / STAMP).is_file():
        if not is_current(package_dir, protos_dir):
            log.warning(
                "gRPC stubs in %s are older than %s and grpcio-tools is not installed: "
                "using them as they are",
                package_dir,
                protos_dir,
            )
        return False
    raise StubsMissing(
        f"gRPC stubs missing in {package_dir}: install Agora from its wheel, or run "
        "`make install` (or `python -m agora.grpc.build`) in a checkout"
    )


def main() -> int:
    if not proto_files():
        print(f"no .proto files under {PROTOS_DIR}: run this from a checkout", file=sys.stderr)
        return 1
    if refresh():
        print(f"gRPC stubs generated in {PACKAGE_DIR} from {PROTOS_DIR}")
    else:
        (PACKAGE_DIR / STAMP).touch()  # newer than its inputs, for make
        print(f"gRPC stubs up to date in {PACKAGE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
