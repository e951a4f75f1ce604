"""The Python SDK the console and the tests use: REST with httpx, the console channel with websockets."""
