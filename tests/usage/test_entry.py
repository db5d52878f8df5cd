"""What the usage ledger counts: one request's entry and the sums per key."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.usage.entry import UsageEntry, UsageSums, is_day

__all__ = ["DayTests", "UsageEntryTests", "UsageSumsTests"]


def _entry(*, day: str = "2026-12-05", prompt: int = 10, completion: int = 20,
           truncated: int = 0) -> UsageEntry:
    return UsageEntry(day=day, subject="alice", role="user", model="llama3",
                      prompt_tokens=prompt, completion_tokens=completion, truncated=truncated)


class DayTests(SynchronousTestCase):
    """Days are ISO dates, so the report sorts and compares them as dates."""

    def test_iso_dates_only(self) -> None:
        """``2026-12-05`` is a day; other spellings and trailing text are not."""
        self.assertEqual([is_day(text) for text in
                          ("2026-12-05", "05/12/2026", "2026-12-05T00:00", "2026-12-05\n")],
                         [True, False, False, False])


class UsageEntryTests(SynchronousTestCase):
    """What a filter hands the ledger."""

    def test_defaults_to_one_request_not_cut(self) -> None:
        """An entry is one request, not truncated, unless said otherwise."""
        entry = _entry()
        self.assertEqual((entry.requests, entry.truncated), (1, 0))

    def test_day_is_an_iso_date(self) -> None:
        """A day in another shape is refused where the entry is made."""
        self.assertRaises(ValueError, _entry, day="05/12/2026")

    def test_counts_are_whole_and_not_negative(self) -> None:
        """A negative or fractional count is a caller's bug, refused where it is made."""
        self.assertRaises(ValueError, _entry, prompt=-1)
        self.assertRaises(ValueError, _entry, completion=1.5)  # type: ignore[arg-type]


class UsageSumsTests(SynchronousTestCase):
    """The sums of one key grow by entries and by other sums."""

    def test_adds_every_count(self) -> None:
        """Requests, prompt and generated tokens and truncations all add up."""
        sums = UsageSums()
        sums.add(_entry(truncated=1))
        sums.add(UsageSums(requests=2, prompt_tokens=1, completion_tokens=2, truncated=0))
        self.assertEqual((sums.requests, sums.prompt_tokens, sums.completion_tokens,
                          sums.truncated), (3, 11, 22, 1))
