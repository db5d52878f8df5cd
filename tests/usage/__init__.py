"""Tests of usage accounting: the ledger, its file format and the report."""
