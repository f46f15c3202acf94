"""Domain errors that services raise; the web layer turns each into a JSON response."""

from __future__ import annotations


class AgoraError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(AgoraError):
    status_code = 401


class Forbidden(AgoraError):
    status_code = 403


class NotFound(AgoraError):
    status_code = 404


class Conflict(AgoraError):
    status_code = 409


class TooManyRequests(AgoraError):
    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Invalid(AgoraError):
    """A field the client sent breaks a rule: 422 with the field's message."""

    status_code = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PayloadTooLarge(AgoraError):
    status_code = 413


class UnsupportedMediaType(AgoraError):
    status_code = 415


class ServiceUnavailable(AgoraError):
    """A service this one depends on cannot be reached (e.g. auth's UserService)."""

    status_code = 503


class Overloaded(ServiceUnavailable):
    """Too much work of one kind queued already (password hashing): 503 + Retry-After,
    at once, rather than a wait nobody can bound."""

    def __init__(self, message: str, retry_after: int, *, lane: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.lane = lane
