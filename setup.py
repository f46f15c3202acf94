"""The one build step pyproject.toml cannot declare: generate the gRPC stubs.

A wheel ships `agora.grpc_gen`, generated from `protos/` while it is built, so an installed
Agora needs neither the protos nor grpcio-tools (a build requirement only). An editable
install generates them into the source tree instead, where the checkout imports them.
The generator is `agora.grpc.build`, loaded by path: the package is not importable yet.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
GENERATOR = ROOT / "src" / "agora" / "grpc" / "build.py"
# `agora cluster` renders the nginx config operators copy (agora.runtime.nginx): a wheel
# carries it as package data; a checkout reads it in place.
NGINX_CONFIG = ROOT / "deploy" / "nginx" / "agora.conf"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("agora_grpc_build", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        super().run()
        generator = load_generator()
        if self.editable_mode:
            generator.refresh()  # src/agora/grpc_gen, where the editable install imports it
        else:
            generator.generate(Path(self.build_lib) / "agora" / "grpc_gen", generator.PROTOS_DIR)
            shutil.copyfile(NGINX_CONFIG, Path(self.build_lib) / "agora" / "runtime" / "agora.conf")


setup(cmdclass={"build_py": BuildPyWithStubs})
