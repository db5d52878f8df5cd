"""The two ways the tokens package refuses input: a bearer token, or a key.

Both carry text meant for people and never the material they refuse: a
:class:`TokenError` reason goes to the client, a :class:`KeyFileError` message to the
operator (who gets the file and setting name from the caller).
"""

from __future__ import annotations

__all__ = ["KeyFileError", "TokenError"]


class TokenError(Exception):
    """A bearer token was refused.

    Attributes:
        code: A stable machine-readable code: ``malformed``, ``too_large``,
            ``unsupported_version``, ``unsupported_purpose``, ``invalid``, ``expired``,
            ``not_yet_valid``, ``issued_in_future``, ``missing_exp``, ``bad_claims``,
            ``wrong_issuer`` or ``wrong_audience``.
        reason: Short human text that is safe to send to the client: it never contains the
            token nor any part of it, nor any claim value, nor a double quote (it may be put
            in a quoted header).
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class KeyFileError(Exception):
    """A key file or key setting cannot be used.

    The message is plain text for the operator. It never contains the key material nor the
    file path: the caller adds the path and the setting name.
    """
