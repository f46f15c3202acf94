"""Write the OpenAPI document of every Agora service, merged, for the web client's types.

    python web/scripts/dump_openapi.py web/openapi.json

Each service app is built (nothing is started: no database, no socket) and its own
document read; paths never overlap (each service has its prefixes) and a shared
component name (the error body, validation errors) has one definition. The output is
sorted, so a change of the API is a readable diff of web/openapi.json, and
`npm run web:api` turns it into web/src/api/schema.d.ts for `tsc`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from agora.core.settings import Settings
from agora.runtime.backends import build_backends
from agora.runtime.registry import SERVICES, service_app


def own_names(service: str, document: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
    """The document with each schema whose name another service already uses for a
    different shape renamed `<Service><Name>` (auth's UserOut is not messaging's)."""
    text = json.dumps(document)
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        if name in known and known[name] != schema:
            renamed = f"{service.capitalize()}{name}"
            text = text.replace(f'"#/components/schemas/{name}"', f'"#/components/schemas/{renamed}"')
            text = text.replace(f'"{name}": {{', f'"{renamed}": {{', 1)
    renamed_document: dict[str, Any] = json.loads(text)
    return renamed_document


def merged_document() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            env="test", data_dir=Path(data_dir), jwt_secret=SecretStr("x" * 48), grpc_port=0
        )
        backends = build_backends(settings)
        paths: dict[str, Any] = {}
        schemas: dict[str, Any] = {}
        for name in SERVICES:
            document = own_names(name, service_app(name, settings, backends).openapi(), schemas)
            paths.update(document.get("paths", {}))
            schemas.update(document.get("components", {}).get("schemas", {}))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Agora", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def main() -> None:
    text = json.dumps(merged_document(), indent=1, sort_keys=True) + "\n"
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
