"""The server: app factory, agent gateway, API, sessions, store (docs/architecture.md)."""
