"""HTTP for messaging (`/api/v1`): translate requests into MessagingService calls.

Every route is behind `CurrentUser` (401 without a valid token). The caller becomes an
`Actor` (user id, client IP, and the raw access token the user directory may forward
to auth). Path ids that cannot be ours are "not found" before the service is asked;
the service answers 404 for conversations the caller is not a member of, whatever
exists. Answers are the domain values' JSON, serialized once with orjson; the models in
`schemas` document them. Media routes: `media_routes` (included in `router`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from agora.services.messaging.http.deps import (
    ERRORS,
    LIMITED,
    PREFIX,
    MessagingServiceDep,
    Responses,
    actor_of,
    json_response,
    path_id,
)
from agora.services.messaging.http.media_routes import router as media_router
from agora.services.messaging.http.schemas import (
    MAX_SEQ,
    ConversationCreate,
    ConversationDetail,
    ConversationOut,
    ConversationPage,
    ConversationRename,
    ConversationState,
    MembersAdd,
    MessageEdit,
    MessageOut,
    MessagePageOut,
    MessageSend,
    ReadMark,
    ReceiptOut,
    SendOut,
    UnreadOut,
)
from agora.web.guard import CurrentUser

router = APIRouter(prefix=PREFIX, tags=["messaging"])
router.include_router(media_router)

IN_CONVERSATION: Responses = {
    **ERRORS,
    404: {"description": "No such conversation, or the caller is not a member"},
}
OWNER_ONLY: Responses = {**IN_CONVERSATION, 403: {"description": "Only the owner may"}}
AUTHOR_ONLY: Responses = {
    **IN_CONVERSATION,
    403: {"description": "Only the author may"},
    404: {"description": "No such conversation (or not a member), or no such message"},
}


# --- conversations --------------------------------------------------------------------


@router.post(
    "/conversations",
    status_code=201,
    responses={
        201: {"model": ConversationOut, "description": "Created"},
        200: {"model": ConversationOut, "description": "The direct conversation existed"},
        **ERRORS,
    },
)
async def create_conversation(
    body: ConversationCreate, user: CurrentUser, service: MessagingServiceDep, request: Request
) -> Response:
    body.check()
    actor = actor_of(user, request)
    if body.kind == "direct":
        assert body.user_id is not None  # check() made sure
        conversation, created = await service.create_direct(actor, body.user_id)
    else:
        assert body.title is not None
        conversation = await service.create_group(actor, body.title, body.members or [])
        created = True
    summary = await service.get_conversation(actor, conversation.id)
    return json_response(summary.to_json(), 201 if created else 200)


@router.get("/conversations", responses={200: {"model": ConversationPage}, **ERRORS})
async def list_conversations(
    user: CurrentUser,
    service: MessagingServiceDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    summaries, next_cursor = await service.list_conversations(
        actor_of(user, request), limit, cursor
    )
    return json_response(
        {"conversations": [s.to_json() for s in summaries], "next_cursor": next_cursor}
    )


@router.get(
    "/conversations/{conversation_id}",
    responses={200: {"model": ConversationDetail}, **IN_CONVERSATION},
)
async def get_conversation(
    conversation_id: str, user: CurrentUser, service: MessagingServiceDep, request: Request
) -> Response:
    conversation_id = path_id(conversation_id, "Conversation")
    actor = actor_of(user, request)
    summary = await service.get_conversation(actor, conversation_id)
    users = await service.describe_members(actor, conversation_id)
    return json_response({**summary.to_json(), "users": [u.to_json() for u in users]})


@router.patch(
    "/conversations/{conversation_id}",
    responses={200: {"model": ConversationState}, **OWNER_ONLY},
)
async def rename_conversation(
    conversation_id: str,
    body: ConversationRename,
    user: CurrentUser,
    service: MessagingServiceDep,
    request: Request,
) -> Response:
    conversation_id = path_id(conversation_id, "Conversation")
    conversation = await service.rename_group(actor_of(user, request), conversation_id, body.title)
    return json_response(conversation.to_json())


@router.post(
    "/conversations/{conversation_id}/members",
    responses={200: {"model": ConversationState}, **OWNER_ONLY},
)
async def add_members(
    conversation_id: str,
    body: MembersAdd,
    user: CurrentUser,
    service: MessagingServiceDep,
    request: Request,
) -> Response:
    conversation_id = path_id(conversation_id, "Conversation")
    conversation = await service.add_members(
        actor_of(user, request), conversation_id, body.user_ids
    )
    return json_response(conversation.to_json())


@router.delete(
    "/conversations/{conversation_id}/members/{user_id}",
    responses={
        200: {"model": ConversationState, "description": "The conversation after the removal"},
        **OWNER_ONLY,
        403: {"description": "Only the owner removes others; anyone may leave"},
    },
)
async def remove_member(
    conversation_id: str,
    user_id: str,
    user: CurrentUser,
    service: MessagingServiceDep,
    request: Request,
) -> Response:
    conversation_id = path_id(conversation_id, "Conversation")
    user_id = path_id(user_id, "Member")
    conversation = await service.remove_member(actor_of(user, request), conversation_id, user_id)
    return json_response(conversation.to_json())


# --- messages -------------------------------------------------------------------------


@router.post(
    "/conversations/{conversation_id}/messages",
    status_code=201,
    responses={
        201: {"model": SendOut, "description": "Stored"},
        200: {"model": SendOut, "description": "That client_id was sent before: the stored one"},
        **IN_CONVERSATION,
        **LIMITED,
    },
)
async def send_message(
    conversation_id: str,
    body: MessageSend,
    user: CurrentUser,
    service: MessagingServiceDep,
    request: Request,
) -> Response:
    conversation_id = path_id(conversation_id, "Conversation")
    body.check()
    result = await service.send(
        actor_of(user, request),
        conversation_id,
        body.client_id,
        text=body.text,
        media_id=body.media_id,
    )
    return json_response(
        {"message": result.message.to_json(), "created": result.created},
        201 if result.created else 200,
    )


@router.get(
    "/conversations/{conversation_id}/messages",
    responses={200: {"model": MessagePageOut}, **IN_CONVERSATION},
)
async def list_messages(
    conversation_id: str,
    user: CurrentUser,
    service: MessagingServiceDep,
    request: Request,
    before: Annotated[
        int | None, Query(ge=0, le=MAX_SEQ, description="Older than this seq (not with after)")
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_SEQ, description="Newer than this seq (not with before)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Response:
    conversation_id = path_id(conversation_id, "Conversation")
    page = await service.list_messages(
        actor_of(user, request), conversation_id, before=before, after=after, limit=limit
    )
    return json_response(page.to_json())


@router.patch(
    "/conversations/{conversation_id}/messages/{message_id}",
    responses={
        200: {"model": MessageOut},
        **AUTHOR_ONLY,
        409: {"description": "The message is deleted"},
    },
)
async def edit_message(
    conversation_id: str,
    message_id: str,
    body: MessageEdit,
    user: CurrentUser,
    service: MessagingServiceDep,
    request: Request,
) -> Response:
    conversation_id = path_id(conversation_id, "Conversation")
    message_id = path_id(message_id, "Message")
    message = await service.edit(actor_of(user, request), conversation_id, message_id, body.text)
    return json_response(message.to_json())


@router.delete(
    "/conversations/{conversation_id}/messages/{message_id}",
    responses={200: {"model": MessageOut, "description": "The tombstone"}, **AUTHOR_ONLY},
)
async def delete_message(
    conversation_id: str,
    message_id: str,
    user: CurrentUser,
    service: MessagingServiceDep,
    request: Request,
) -> Response:
    conversation_id = path_id(conversation_id, "Conversation")
    message_id = path_id(message_id, "Message")
    message = await service.delete(actor_of(user, request), conversation_id, message_id)
    return json_response(message.to_json())


@router.post(
    "/conversations/{conversation_id}/read",
    responses={200: {"model": ReceiptOut}, **IN_CONVERSATION},
)
async def mark_read(
    conversation_id: str,
    body: ReadMark,
    user: CurrentUser,
    service: MessagingServiceDep,
    request: Request,
) -> Response:
    conversation_id = path_id(conversation_id, "Conversation")
    receipt = await service.mark_read(actor_of(user, request), conversation_id, body.seq)
    return json_response(receipt.to_json())


@router.get("/unread", responses={200: {"model": UnreadOut}, **ERRORS})
async def unread(user: CurrentUser, service: MessagingServiceDep, request: Request) -> Response:
    counts = await service.unread_counts(actor_of(user, request))
    return json_response({"total": sum(counts.values()), "conversations": counts})
