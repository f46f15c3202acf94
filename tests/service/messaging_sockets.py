"""Helpers of the messaging socket tests (one server, and two instances): devices opened
with fresh tickets, the REST calls the tests make around them, topics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agora.core.settings import Settings
from tests.service.social_harness import Client, social_settings
from tests.support.messaging_client import Device, ReplyError


def messaging_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"messaging_typing_ttl": 0.5, "messaging_sync_max_messages": 5}
    values.update(overrides)
    return social_settings(tmp_path, **values)


def ws_base(base_url: str) -> str:
    return base_url.replace("http://", "ws://")


async def open_device(client: Client, base_url: str | None = None, name: str = "") -> Device:
    """A socket on `base_url` (default: the client's server) with a ticket from the
    client's server: tickets are the social service's, good on any messaging instance."""
    ticket = await client.ticket()
    return await Device.open(ws_base(base_url or client.base_url), ticket, name or client.login)


async def rest(
    client: Client, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any
) -> Any:
    response = await client.http.request(
        method,
        f"{kw.get('base_url') or client.base_url}/api/v1{path}",
        json=body,
        headers={"Authorization": f"Bearer {client.token}"},
    )
    assert response.status_code == kw.get("status", response.status_code), response.text
    return response.json()


async def direct(alice: Client, bob: Client) -> str:
    body = await rest(alice, "POST", "/conversations", {"kind": "direct", "user_id": bob.user_id})
    return str(body["id"])


async def group(owner: Client, *members: Client) -> str:
    body = await rest(
        owner,
        "POST",
        "/conversations",
        {"kind": "group", "title": "team", "members": [m.user_id for m in members]},
        status=201,
    )
    return str(body["id"])


async def rest_send(client: Client, conversation_id: str, client_id: str, text: str) -> Any:
    return await rest(
        client,
        "POST",
        f"/conversations/{conversation_id}/messages",
        {"client_id": client_id, "text": text},
    )


async def error_of(device: Device, topic: str, event: str, payload: dict[str, Any]) -> Any:
    with pytest.raises(ReplyError) as refused:
        await device.request(topic, event, payload)
    return refused.value.response


def topic(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


async def joined_device(
    client: Client, *conversation_ids: str, base_url: str | None = None
) -> Device:
    device = await open_device(client, base_url)
    await device.join(f"user:{client.user_id}")
    await device.expect("presence_state", topic=f"user:{client.user_id}")
    for conversation_id in conversation_ids:
        await device.join(topic(conversation_id))
        await device.expect("presence_state", topic=topic(conversation_id))
    return device
