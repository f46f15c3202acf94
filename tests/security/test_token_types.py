"""Token types are mutually exclusive: an access token is never a socket ticket, and a
ticket (`typ: "ws-connect"`, the contracts (docs/contracts.md)) is never an access token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from agora.security.keys import Key
from agora.security.tokens import TokenError
from tests.security.support import claims_for, new_session, running_agora, sign, wait_active

TICKET = "ws-connect"


async def test_an_access_token_is_not_a_socket_ticket(tmp_path: Path) -> None:
    async with running_agora(tmp_path, jwt_algorithm="ES256") as agora:
        session = await new_session(agora.client)
        tokens = agora.tokens
        assert tokens.verify(session.token).user_id == session.user_id  # now in the cache too
        with pytest.raises(TokenError) as refused:
            tokens.verify(session.token, typ=TICKET)
        assert (refused.value.message, refused.value.reason) == ("Invalid token type", "wrong_type")


@pytest.mark.parametrize("alg", ["HS256", "EdDSA"])
async def test_a_socket_ticket_is_refused_by_token_required(tmp_path: Path, alg: str) -> None:
    async with running_agora(tmp_path, jwt_algorithm=alg) as agora:
        session = await new_session(agora.client)
        await wait_active(agora.client, session)
        ticket = agora.tokens.issue(session.user_id, TICKET, 10, login=session.login).token
        assert agora.tokens.verify(ticket, typ=TICKET).user_id == session.user_id

        for path in ("/auth/api/me", "/api/publications"):
            for _ in range(2):  # and not let in by the verified-token cache the second time
                answer = await agora.client.get(path, headers={"Authorization": f"Bearer {ticket}"})
                assert (answer.status_code, answer.json()) == (401, {"error": "Invalid token type"})
        await expect_refused_typ(
            agora.client, agora.signing_key, claims_for(session, agora.settings)
        )


async def test_a_ticket_from_the_social_service_is_no_access_token(tmp_path: Path) -> None:
    async with running_agora(tmp_path, jwt_algorithm="EdDSA") as agora:
        session = await new_session(agora.client)
        await wait_active(agora.client, session)
        answer = await agora.client.post(
            "/social/api/socials/connect-token", headers=session.bearer
        )
        assert answer.status_code == 200, answer.text
        ticket = answer.json()["token"]
        for path in ("/auth/api/me", "/api/publications", "/social/api/socials/connect-token"):
            refused = await agora.client.get(path, headers={"Authorization": f"Bearer {ticket}"})
            assert (refused.status_code, refused.json()) == (401, {"error": "Invalid token type"})


async def expect_refused_typ(client: httpx.AsyncClient, key: Key, claims: dict[str, Any]) -> None:
    """A token without `typ`, or with another one, is no access token either."""
    for typ in (None, "refresh", "ACCESS", ["access"]):
        forged = dict(claims)
        if typ is None:
            del forged["typ"]
        else:
            forged["typ"] = typ
        token = sign(key, forged)
        answer = await client.get("/auth/api/me", headers={"Authorization": f"Bearer {token}"})
        assert (answer.status_code, answer.json()) == (401, {"error": "Invalid token type"})
