"""Errors of the security layer, a branch of ``DamselflyError``::

    DamselflyError
    └── SecurityError                 a certificate, key or token cannot be used
        ├── KeyFileModeError          a secret file readable by group or others
        ├── EnrollmentError           the enrollment service refused us, or we refused it
        │   └── TokenRefusedError     unknown, used or expired join token (HTTP 403)
        └── AccessDeniedError         the caller's role may not do this (HTTP 403)

Messages never carry a secret: a token, a key or a key file's content.
"""

from __future__ import annotations

from damselfly.config.secret_files import mode_refusal
from damselfly.core.errors import DamselflyError


class SecurityError(DamselflyError):
    http_status = 403


class KeyFileModeError(SecurityError):
    def __init__(self, path: str, mode: int) -> None:
        super().__init__(mode_refusal(path, mode))
        self.path = path
        self.mode = mode


class EnrollmentError(SecurityError):
    http_status = 400


class TokenRefusedError(EnrollmentError):
    http_status = 403


class AccessDeniedError(SecurityError):
    http_status = 403
