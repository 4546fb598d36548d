"""`python -m digest.cli`: the same command as the `digest` console script."""

from digest.cli import app

app()
