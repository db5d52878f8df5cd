"""Tests of reading and rewriting Ollama API requests as Ollama reads them."""
