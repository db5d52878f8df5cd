"""Tests of the gateway's own HTTP/1.1 server: head parsing, body decoding, connection handling."""
