"""The email templates (Jinja2 of MJML, and plain-text twins), shipped as package data.

A package of its own so that a wheel carries them and `digest.rendering` loads them with Jinja's
`PackageLoader`, wherever the project is installed: nothing is read from beside the source tree.
"""
