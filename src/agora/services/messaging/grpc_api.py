"""Messaging's gRPC MessagingService (protos/agora/messaging/v1/messaging.proto).

A thin door, as the REST routes are: each RPC authenticates the access token in the
call metadata, calls the same `MessagingService` method as REST (so validation, content
filtering, rate limits, idempotent sends and membership are the same rules) and
translates values to protobuf. Domain errors become gRPC statuses in
`agora.grpc.errors`.
"""

from __future__ import annotations

import grpc

from agora.grpc.auth import Caller, GrpcAuthenticator, authenticated_rpc
from agora.grpc.server import Registrar
from agora.grpc.stubs import messaging_pb2, messaging_pb2_grpc
from agora.services.messaging.domain import Actor, MediaRef, Message, iso
from agora.services.messaging.service.messages import MessagingService

DEFAULT_PAGE = 50  # as GET /api/v1/conversations/{id}/messages


def media_pb(media: MediaRef) -> messaging_pb2.MediaRef:
    return messaging_pb2.MediaRef(
        id=media.id,
        content_type=media.content_type,
        size=media.size,
        filename=media.filename,
        url=media.url,
    )


def message_pb(message: Message) -> messaging_pb2.Message:
    out = messaging_pb2.Message(
        id=message.id,
        conversation_id=message.conversation_id,
        seq=message.seq,
        version=message.version,
        author_id=message.author_id,
        client_id=message.client_id,
        kind=message.kind,
        created_at=iso(message.created_at) or "",
        deleted=message.deleted,
    )
    # Optional fields stay unset (not "") when the value is absent, as JSON has null.
    if message.text is not None:
        out.text = message.text
    if message.media is not None:
        out.media.CopyFrom(media_pb(message.media))
    if message.edited_at is not None:
        out.edited_at = iso(message.edited_at) or ""
    if message.deleted_at is not None:
        out.deleted_at = iso(message.deleted_at) or ""
    return out


def actor_of(caller: Caller) -> Actor:
    return Actor(caller.user_id, ip=caller.ip, token=caller.token)


class MessagingServicer(messaging_pb2_grpc.MessagingServiceServicer):
    SERVICE = "agora.messaging.v1.MessagingService"

    def __init__(self, service: MessagingService, auth: GrpcAuthenticator) -> None:
        self.service = service
        self.auth = auth

    @authenticated_rpc
    async def SendMessage(
        self, request: messaging_pb2.SendMessageRequest, caller: Caller
    ) -> messaging_pb2.SendMessageResponse:
        content = request.WhichOneof("content")
        result = await self.service.send(
            actor_of(caller),
            request.conversation_id,
            request.client_id,
            text=request.text if content == "text" else None,
            media_id=request.media_id if content == "media_id" else None,
        )
        return messaging_pb2.SendMessageResponse(
            message=message_pb(result.message), created=result.created
        )

    @authenticated_rpc
    async def ListMessages(
        self, request: messaging_pb2.ListMessagesRequest, caller: Caller
    ) -> messaging_pb2.ListMessagesResponse:
        page = await self.service.list_messages(
            actor_of(caller),
            request.conversation_id,
            before=request.before if request.HasField("before") else None,
            after=request.after if request.HasField("after") else None,
            limit=request.limit or DEFAULT_PAGE,
        )
        return messaging_pb2.ListMessagesResponse(
            messages=[message_pb(m) for m in page.messages], has_more=page.has_more
        )

    @authenticated_rpc
    async def GetUnreadCount(
        self, request: messaging_pb2.GetUnreadCountRequest, caller: Caller
    ) -> messaging_pb2.GetUnreadCountResponse:
        actor = actor_of(caller)
        if request.HasField("conversation_id"):
            conversation_id = request.conversation_id
            counts = {conversation_id: await self.service.unread_count(actor, conversation_id)}
        else:
            counts = await self.service.unread_counts(actor)
        return messaging_pb2.GetUnreadCountResponse(
            total=sum(counts.values()), conversations=counts
        )

    @authenticated_rpc
    async def MarkRead(
        self, request: messaging_pb2.MarkReadRequest, caller: Caller
    ) -> messaging_pb2.Receipt:
        receipt = await self.service.mark_read(
            actor_of(caller), request.conversation_id, request.seq
        )
        return messaging_pb2.Receipt(
            conversation_id=receipt.conversation_id,
            user_id=receipt.user_id,
            read_seq=receipt.read_seq,
            unread=receipt.unread,
        )


def messaging_service(service: MessagingService, auth: GrpcAuthenticator) -> Registrar:
    """Adds MessagingService over `service`, verifying tokens with `auth`."""

    def register(server: grpc.aio.Server) -> None:
        servicer = MessagingServicer(service, auth)
        messaging_pb2_grpc.add_MessagingServiceServicer_to_server(servicer, server)

    return register
