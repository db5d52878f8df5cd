"""Tests of the request pipeline: routing and the filter chain runner."""
