"""HTTP errors with a machine-readable code, a sentence, and nothing else."""

from __future__ import annotations

from fastapi import HTTPException

# Contract error codes and the HTTP status they map to.
_STATUS_OF_CODE = {
    "TASK_NOT_FOUND": 404,
    "ROUND_NOT_FOUND": 404,
    "INVALID_ARGUMENT": 400,
    "SPEC_MISMATCH": 409,
    "MODEL_MISMATCH": 409,
    "FINGERPRINT_MISMATCH": 409,
    "IDENTITY_MISMATCH": 403,
    "IDENTITY_IN_USE": 409,
    "NODE_NOT_REGISTERED": 403,
    "NODE_NOT_ACTIVE": 409,
    "TASK_DONE": 409,
}


def api_error(status: int, code: str, message: str) -> HTTPException:
    """An HTTPException whose JSON detail is ``{"error": code, "message": message}``."""
    return HTTPException(status_code=status, detail={"error": code, "message": message})


def contract_http_error(code: str, message: str) -> HTTPException:
    """Maps a contract refusal to an HTTP error."""
    return api_error(_STATUS_OF_CODE.get(code, 409), code, message)
