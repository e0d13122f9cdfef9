"""Renderers: the same report as terminal text, JSON, Markdown or a plot. No advice is computed here."""
