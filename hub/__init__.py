"""Torwart."""
