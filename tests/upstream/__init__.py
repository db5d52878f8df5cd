"""Tests of the HTTP/1.1 client that talks to runners: response parsing, connections, the pool."""
