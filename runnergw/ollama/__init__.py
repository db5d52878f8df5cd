"""Ollama's API as Ollama itself reads it: request bodies decoded the way its Go server decodes
them, its endpoints, its model names, rewrites for policy filters and well-formed answer
endings."""
