"""The hub's application core."""
