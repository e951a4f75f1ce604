"""Linux implementations of the agent collectors."""
