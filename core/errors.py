"""The error contract: one exception type that becomes ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error that reaches the client as JSON with an HTTP status.

    Raise it anywhere below the route; the route turns it into a response.
    """

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}


def bad_request(message: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, message)


def payload_too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"request body is larger than {max_bytes} bytes")


def unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "a function key is required: x-functions-key header or ?code=")


class NotReady(ApiError):
    """The service cannot answer yet (index loading, load failed): 503 with Retry-After."""

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(503, "not_ready", message, headers={"Retry-After": str(retry_after_s)})
