"""Subscribers: signup, confirmation, preferences, leaving, data export and erasure, lists."""
