"""Helpers for tests that others can use: a throwaway server with a real agent (cluster.py)."""
