"""Domain errors that services raise; the web layer turns each into a JSON response."""

from __future__ import annotations


class AgoraError(Exception):
    """Bad request."""

    status_code = 400
    # A stable, machine-readable word for why, sent beside the message when set
    # (`{"error": ..., "reason": ...}`): clients branch on it, never on the message.
    # (Not `reason`: token errors keep their audit-only reason under that name.)
    public_reason: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(AgoraError):
    """Missing, invalid, expired or revoked token (or bad credentials at login)."""

    status_code = 401


class Forbidden(AgoraError):
    """Not allowed (`reason` says why)."""

    status_code = 403
    public_reason = "forbidden"


class InactiveUser(Forbidden):
    """A valid token of a user who is not connected (logged out, or swept idle)."""

    public_reason = "inactive_user"


class CsrfRefused(Forbidden):
    """A cookie-authenticated change without the session's `X-CSRF-Token`."""

    public_reason = "csrf_failed"


class CrossSiteRefused(Forbidden):
    """A browser request from another site to a route that sets or clears the session
    cookie (login CSRF)."""

    public_reason = "cross_site"


class NotFound(AgoraError):
    """No such resource of yours."""

    status_code = 404


class Conflict(AgoraError):
    """Already exists."""

    status_code = 409


class TooManyRequests(AgoraError):
    """Too many requests; try again after `Retry-After` seconds."""

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


class RequestTimeout(AgoraError):
    """The client stopped sending its request body (an upload gone quiet)."""

    status_code = 408


class PayloadTooLarge(AgoraError):
    """Request body too large."""

    status_code = 413


class UnsupportedMediaType(AgoraError):
    """Unsupported media type."""

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
