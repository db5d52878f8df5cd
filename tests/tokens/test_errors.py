"""The errors of the tokens package: what a client or an operator is shown."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.tokens.errors import KeyFileError, TokenError

__all__ = ["KeyFileErrorTests", "TokenErrorTests"]


class TokenErrorTests(SynchronousTestCase):
    """A refused token carries a stable code and a reason for the client."""

    def test_text_is_the_reason(self) -> None:
        """The error reads as its reason alone, without the code."""
        error = TokenError("expired", "token expired")
        self.assertEqual(str(error), "token expired")
        self.assertEqual((error.code, error.reason), ("expired", "token expired"))

    def test_code_and_reason_survive_raising(self) -> None:
        """Raised and caught, the error still carries both its code and its reason."""
        with self.assertRaises(TokenError) as caught:
            raise TokenError("wrong_audience", "token is not meant for this audience")
        self.assertEqual(caught.exception.code, "wrong_audience")
        self.assertEqual(caught.exception.args, ("wrong_audience", caught.exception.reason))


class KeyFileErrorTests(SynchronousTestCase):
    """An unusable key is reported with the message as given."""

    def test_text_is_the_message(self) -> None:
        """The error reads as the message it was raised with, for the caller to prefix."""
        self.assertEqual(str(KeyFileError("no public key found")), "no public key found")
