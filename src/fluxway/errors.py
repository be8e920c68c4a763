"""Errors the gateway itself answers with, and their two wire shapes (OpenAI's and Anthropic's):
every answer the gateway builds, from an ingress, the admin API, the router's 404/405 or the HTTP
protocol's refusals, renders a :class:`GatewayError` with one of the two functions below."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """An error answer: HTTP status plus OpenAI-style type/code/param (ingresses map them)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}
        # The targets tried before this answer ("provider/model"), when every one failed.
        self.tried: tuple[str, ...] = ()


def openai_error_body(err: GatewayError) -> dict[str, Any]:
    """OpenAI's ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}


# HTTP status -> Anthropic's ``error.type`` (its API reference's "Errors" page).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(err: GatewayError) -> str:
    """A gateway error's status -> the Anthropic ``error.type``."""
    known = _ANTHROPIC_TYPES.get(err.status)
    if known is not None:
        return known
    return "api_error" if err.status >= 500 else "invalid_request_error"


def anthropic_error_body(err: GatewayError) -> dict[str, Any]:
    """Anthropic's ``{"type": "error", "error": {"type", "message"}}``."""
    return {"type": "error", "error": {"type": anthropic_error_type(err), "message": err.message}}


def error_body(err: GatewayError, *, anthropic: bool) -> dict[str, Any]:
    """``err`` in the caller's shape."""
    return anthropic_error_body(err) if anthropic else openai_error_body(err)


def bad_request(message: str, param: str | None = None, code: str | None = "invalid_request") -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def missing_field(param: str) -> GatewayError:
    return GatewayError(400, f"'{param}' is required", param=param, code="missing_required_parameter")


def wrong_type(param: str, expected: str) -> GatewayError:
    return GatewayError(400, f"'{param}' must be {expected}", param=param, code="invalid_type")


def unauthorized(message: str = "missing or invalid API key") -> GatewayError:
    return GatewayError(401, message, type="authentication_error", code="invalid_api_key")


def forbidden(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(403, message, type="permission_error", code="forbidden", param=param)


def model_unpriced(model: str) -> GatewayError:
    return GatewayError(
        403,
        f"model '{model}' has no known price, and this key has a budget: set a price for it in the config "
        "(targets[].price) or allow unpriced models (budgets.allow_unpriced)",
        type="permission_error",
        code="model_unpriced",
        param="model",
    )


def model_not_found(model: str, known: list[str]) -> GatewayError:
    names = ", ".join(known) if known else "(none)"
    return GatewayError(
        404,
        f"model '{model}' is not configured; known: {names}",
        param="model",
        code="model_not_found",
    )


def rate_limited(message: str, retry_after: float, headers: dict[str, str] | None = None) -> GatewayError:
    h = {"retry-after": str(max(1, int(retry_after + 0.999))), **(headers or {})}
    return GatewayError(429, message, type="rate_limit_error", code="rate_limit_exceeded", headers=h)


def overloaded(retry_after: int = 1) -> GatewayError:
    return GatewayError(
        503,
        "the gateway is overloaded; retry shortly",
        type="server_error",
        code="overloaded",
        headers={"retry-after": str(retry_after)},
    )
