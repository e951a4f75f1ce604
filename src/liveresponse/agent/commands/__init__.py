"""Agent command handlers, one module per command, registered by catalogue name.

See ``context.py`` for the handler contract. ``HANDLERS`` is filled by
``dispatch.py``; a catalogue command of ``Runs.AGENT`` with no handler is a
test failure (tests/test_catalogue.py).
"""
