"""Bearer-token checks for the machine-facing endpoints (ingest, admin)."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status


def require_bearer(request: Request, expected: str) -> None:
    """401 unless the request carries exactly `Bearer <expected>` (constant-time compare).

    An empty expected token means the endpoint is switched off, never open.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if (
        not expected
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(token.strip().encode(), expected.encode())
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
