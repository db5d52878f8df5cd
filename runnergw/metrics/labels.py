"""Label values for the exchange metrics, each from a small fixed set: a metric's series stay
few whatever clients send (no subject, path, model name or message from a client)."""

from __future__ import annotations

__all__ = ["OUTCOMES", "REASON_KINDS", "method_class", "outcome_label", "reason_kind",
           "status_label"]

_READ_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
_WRITE_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))

OUTCOMES = frozenset(("ok", "denied", "refused", "client_error", "upstream_error", "timeout",
                      "client_gone", "truncated", "error", "command_failed", "shutdown"))
"""The outcomes the gateway records; anything else is counted as ``other``."""

_REASON_PREFIXES: tuple[tuple[str, str], ...] = (
    # Longer, more precise prefixes before the shorter ones they begin with.
    ("role limit", "media_limit"),
    ("token", "token"),
    ("websaas token", "token"),
    ("no identity", "token"),
    ("role ", "role"),
    ("model list", "upstream"),
    ("model ", "model"),
    ("bad model name", "model"),
    ("no model", "model"),
    ("alias of ", "model"),
    ("unknown endpoint", "endpoint"),
    ("method not allowed", "endpoint"),
    ("basic not allowed", "endpoint"),
    ("inference not allowed", "endpoint"),
    ("catalogue not allowed", "endpoint"),
    ("management not allowed", "endpoint"),
    ("rate limited", "rate_limit"),
    ("concurrency limit", "concurrency"),
    ("daily token quota", "quota"),
    ("prompt over the daily quota", "quota"),
    ("request body larger", "body_too_large"),
    ("body not readable", "body"),
    ("invalid request body", "body"),
    ("queue full", "queue_full"),
    ("stopping", "stopping"),
    ("the gateway stopped", "stopping"),
    ("command", "command"),
    ("upload", "form"),
    ("bad multipart", "form"),
    ("form refused", "form"),
    ("template refused", "form"),
    ("job", "command"),
    ("output unreadable", "command"),
    ("client disconnected", "client_gone"),
    ("client ", "client_timeout"),
    ("upstream", "upstream"),
    ("connect", "upstream"),
    ("first byte timeout", "upstream"),
    ("runner ", "upstream"),
    ("input_form", "form"),
    ("the uploaded file", "media_limit"),
    ("the model is busy", "queue_full"),
    ("the node is busy", "queue_full"),
    ("the node is stopping", "stopping"),
    ("the node has no room", "storage"),
    ("internal error", "internal"),
    ("no runner serves", "not_found"),
    ("not found", "not_found"),
)

REASON_KINDS = frozenset(kind for _, kind in _REASON_PREFIXES) | {"", "other"}
"""Every value the ``reason`` label takes."""


def method_class(method: str) -> str:
    """``read`` (GET, HEAD, OPTIONS), ``write`` (POST, PUT, PATCH, DELETE) or ``other``."""
    if method in _READ_METHODS:
        return "read"
    if method in _WRITE_METHODS:
        return "write"
    return "other"


def status_label(status: int) -> str:
    """The status code sent, ``0`` when no response head was."""
    return str(status) if 100 <= status <= 599 else "0"


def outcome_label(outcome: str) -> str:
    """The exchange's outcome, ``other`` for one outside :data:`OUTCOMES`."""
    return outcome if outcome in OUTCOMES else "other"


def reason_kind(reason: str | None) -> str:
    """The kind of a refusal or failure reason (``token``, ``quota``, ``upstream``…); empty
    for none, ``other`` for a reason of no known kind. The reason's text (which may name a
    model, a role or a file) is never a label."""
    if not reason:
        return ""
    lowered = reason.lower()
    for prefix, kind in _REASON_PREFIXES:
        if lowered.startswith(prefix):
            return kind
    return "other"
