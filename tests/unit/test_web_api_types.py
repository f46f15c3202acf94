"""The web client's API types are generated from the API: web/openapi.json (the source of
web/src/api/schema.d.ts) must be what the services document today. A route or schema
change fails here until `make web-api` regenerates both, and then `tsc` (the build)
fails wherever the client no longer fits."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_document_is_the_api_of_today() -> None:
    dump = runpy.run_path(str(ROOT / "web" / "scripts" / "dump_openapi.py"))
    today = json.loads(json.dumps(dump["merged_document"](), sort_keys=True))
    committed = json.loads((ROOT / "web" / "openapi.json").read_text())
    assert committed == today, "the API changed: run `make web-api` and fix what tsc reports"


def test_the_types_were_generated_from_the_committed_document() -> None:
    schema = (ROOT / "web" / "src" / "api" / "schema.d.ts").read_text()
    for path in json.loads((ROOT / "web" / "openapi.json").read_text())["paths"]:
        assert f'"{path}": {{' in schema, f"{path} missing from schema.d.ts: run `make web-api`"
