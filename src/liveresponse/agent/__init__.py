"""The agent: dials out to the server, verifies and runs signed commands."""
