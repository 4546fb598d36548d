"""Comparisons coming in: the events API, imported files and saved pages, and collecting a week."""
