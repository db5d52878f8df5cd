"""An ordered, case-insensitive list of HTTP header fields."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["Headers", "HOP_BY_HOP", "forwardable_request_headers"]

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})
"""Fields that describe one connection and never cross a proxy (RFC 9110 §7.6.1)."""

_OWS = " \t"
"""Optional whitespace (RFC 9110 section 5.6.3): what may surround a value or list element."""


class Headers:
    """Header fields in arrival order; names compare case-insensitively."""

    __slots__ = ("_fields", "_keys")

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str]] = list(fields)
        self._keys: list[str] = [name.lower() for name, _ in self._fields]
        """The lower-case name of each field, lowered once rather than at every lookup."""

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({[name for name, _ in self._fields]!r})"

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``."""
        try:
            return self._fields[self._keys.index(name.lower())][1]
        except ValueError:
            return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        name = name.lower()
        return [field[1] for key, field in zip(self._keys, self._fields, strict=True)
                if key == name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._keys

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        self._fields.append((name, value))
        self._keys.append(name.lower())

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` field with one."""
        self.remove(name)
        self.add(name, value)

    def remove(self, name: str) -> None:
        """Drop every ``name`` field."""
        if name.lower() in self._keys:
            self.remove_all((name,))

    def remove_all(self, names: Iterable[str]) -> None:
        """Drop every field whose lower-case name is in ``names``."""
        drop = {n.lower() for n in names}
        if not drop:
            return
        kept = [(key, field) for key, field in zip(self._keys, self._fields, strict=True)
                if key not in drop]
        self._keys = [key for key, _ in kept]
        self._fields = [field for _, field in kept]

    def connection_tokens(self) -> set[str]:
        """Lower-case field names listed in ``Connection`` (they are hop-by-hop too).

        Only optional whitespace (SP, HTAB) is trimmed around each token, as Go does:
        ``str.strip()`` would also drop NBSP and NEL and read ``close\\xa0`` as ``close``.
        """
        tokens: set[str] = set()
        for value in self.get_all("connection"):
            for token in value.split(","):
                token = token.strip(_OWS)
                if token:
                    tokens.add(token.lower())
        return tokens

    def without(self, drop: frozenset[str] | set[str]) -> Headers:
        """A copy without the fields whose lower-case name is in ``drop``."""
        copy = Headers()
        for key, field in zip(self._keys, self._fields, strict=True):
            if key not in drop:
                copy._keys.append(key)
                copy._fields.append(field)
        return copy

    def without_hop_by_hop(self) -> Headers:
        """A copy without hop-by-hop fields and those named in ``Connection``."""
        return self.without(HOP_BY_HOP | self.connection_tokens())

    def copy(self) -> Headers:
        """A shallow copy."""
        return self.without(frozenset())

    def encode(self) -> bytes:
        """The fields as ``Name: value\\r\\n`` lines."""
        return b"".join(
            f"{name}: {value}\r\n".encode("latin-1") for name, value in self._fields
        )


_NEVER_FORWARDED = frozenset({
    "host", "content-length", "expect",
    # The client's credentials are for the gateway, never for the runner.
    "authorization", "proxy-authorization", "x-user-token", "cookie",
    # The gateway states these itself; a client must not forge them.
    "forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip",
    "x-request-id",
})


def forwardable_request_headers(headers: Headers) -> Headers:
    """The client's request headers that may be sent to a runner."""
    return headers.without(HOP_BY_HOP | _NEVER_FORWARDED | headers.connection_tokens())
