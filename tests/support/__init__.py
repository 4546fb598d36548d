"""Helpers of the test suite: services, fixtures, builders and the SendGrid stand-in.

Fixture modules here are registered once, from the repository's root `conftest.py`; test
modules import the plain helpers they use and never declare `pytest_plugins`.
"""
