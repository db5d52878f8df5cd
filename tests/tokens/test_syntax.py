"""Token syntax: what is refused as malformed or too large before any cryptography."""

from __future__ import annotations

import base64

from runnergw.tokens.syntax import check_token_syntax
from tests.helpers.paseto_keys import b64url
from tests.helpers.paseto_tokens import VerifierTestCase, encode_token, token_claims

__all__ = ["SyntaxTests"]

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class SyntaxTests(VerifierTestCase):
    """Checks made before any cryptography."""

    def _odd_length_token(self) -> tuple[str, str]:
        """A valid v4.public token whose body length is not a multiple of 4, and its body."""
        for size in range(4):
            token = encode_token(self.signing[4], token_claims(pad="x" * size))
            body = token.split(".")[2]
            if len(body) % 4:
                return token, body
        raise AssertionError("no token with an unaligned body")

    def test_padding_refused(self) -> None:
        """A token with base64 padding is refused as malformed, before any cryptography."""
        verifier = self.verifier()
        token, body = self._odd_length_token()
        self.assertEqual(verifier.verify(token).subject, "alice")
        padded = token + "=" * (-len(body) % 4)
        self.assertRefused(self.verifier(), padded, "malformed")

    def test_non_canonical_trailing_bits_refused(self) -> None:
        """A respelling of a valid token with non-zero trailing bits is refused as malformed."""
        token, body = self._odd_length_token()
        last = _ALPHABET[_ALPHABET.index(body[-1]) | 1]
        variant = token[:-1] + last
        self.assertNotEqual(variant, token)
        padding = "=" * (-len(body) % 4)
        self.assertEqual(
            base64.urlsafe_b64decode(variant.split(".")[2] + padding),
            base64.urlsafe_b64decode(body + padding),
        )
        verifier = self.verifier()
        self.assertRefused(verifier, variant, "malformed")
        self.assertEqual(verifier.verify(token).subject, "alice")

    def test_non_canonical_footer_refused(self) -> None:
        """A padded footer is refused as malformed."""
        token = encode_token(self.signing[4], token_claims(), footer=b"kid")
        self.assertRefused(self.verifier(), token + "=", "malformed")

    def test_malformed_tokens(self) -> None:
        """Tokens that are not well-formed PASETO are refused as malformed."""
        body = b64url(bytes(100))
        verifier = self.verifier()
        for token in (
            "",
            "Bearer",
            "v4.public",
            "v4.public.",
            f"v4.public.{body}.",
            f"v4.public.{body}.{body}.{body}",
            f"v5.public.{body}",
            f"v4.secret.{body}",
            f"v4.public.{body[:-4]}+/AA",
            f"v4.public.{body}\u00e9",
            f"v4.public.{b64url(bytes(63))}",
            f"v4.local.{b64url(bytes(63))}",
            f"v2.local.{b64url(bytes(39))}",
            f"V4.public.{body}",
        ):
            self.assertRefused(verifier, token, "malformed")

    def test_oversized_token(self) -> None:
        """Tokens longer than the configured maximum are refused; the limit itself is fine."""
        token = encode_token(self.signing[4], token_claims())
        self.assertEqual(self.verifier(max_token_bytes=len(token)).verify(token).subject, "alice")
        self.assertRefused(self.verifier(max_token_bytes=len(token) - 1), token, "too_large")

    def test_default_size_limit(self) -> None:
        """An 8 KiB-plus token is refused by default."""
        token = encode_token(self.signing[4], token_claims(pad="x" * 8192))
        self.assertRefused(self.verifier(), token, "too_large")

    def test_syntax_result(self) -> None:
        """The syntax check reports the version and purpose of a well-formed token."""
        token = encode_token(self.local[2], token_claims())
        header = check_token_syntax(
            token, versions=("v2",), purposes=("local",), max_bytes=len(token)
        )
        self.assertEqual(header, ("v2", "local"))
