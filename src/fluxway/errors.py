"""Errors the gateway itself answers with; each ingress renders them in its caller's API shape."""

from __future__ import annotations


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
