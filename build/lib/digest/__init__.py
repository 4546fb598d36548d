"""Weekly AI Tool Verdicts: the digest service's domain. Nothing in this package imports Celery."""
