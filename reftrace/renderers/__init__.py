"""Renderers: each reads a ``Report`` (plain data) and draws it in one format."""
