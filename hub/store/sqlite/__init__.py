"""The hub's store on SQLite."""
