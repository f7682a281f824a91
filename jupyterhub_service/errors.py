"""The bridge's one error type: an HTTP status and a stable code, as the API
reports them (``{"error": code, "message": text, ...}``)."""

from __future__ import annotations


class BridgeError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict:
        return {"error": self.code, "message": self.message, **self.extra}


def hub_unavailable(message: str = "The notebook service is not answering.") -> BridgeError:
    return BridgeError(503, "hub_unavailable", message)
