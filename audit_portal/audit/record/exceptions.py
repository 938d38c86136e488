"""What is known about an exception: its severity (the one mapping), type name, stack trace and fingerprint."""

from __future__ import annotations

import hashlib
import os
import traceback

from marshmallow import ValidationError as MarshmallowValidationError
from wtforms.validators import ValidationError as WTFormsValidationError

from ...config import PROJECT_ROOT
from .enums import ErrorSeverity

#: Fingerprints name frames by their path below the repository's root.
_PROJECT_ROOT = PROJECT_ROOT

#: webargs raises marshmallow's ValidationError, so it is covered by the first entry.
VALIDATION_ERRORS: tuple[type[BaseException], ...] = (MarshmallowValidationError, WTFormsValidationError)
CRITICAL_ERRORS: tuple[type[BaseException], ...] = (SystemError, MemoryError)


def severity_for(exc: BaseException) -> ErrorSeverity:
    """CRITICAL for SystemError and MemoryError, WARNING for validation errors, ERROR for everything else."""
    if isinstance(exc, CRITICAL_ERRORS):
        return ErrorSeverity.CRITICAL
    if isinstance(exc, VALIDATION_ERRORS):
        return ErrorSeverity.WARNING
    return ErrorSeverity.ERROR


def error_type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _is_application_frame(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path.startswith(_PROJECT_ROOT + os.sep) and "site-packages" not in path


def innermost_app_frame(exc: BaseException) -> str | None:
    """``module/path.py:function`` of the deepest frame in the project's own code, if any."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    for frame in reversed(frames):
        if _is_application_frame(frame.filename):
            return f"{os.path.relpath(frame.filename, _PROJECT_ROOT)}:{frame.name}"
    return f"{frames[-1].filename.rsplit(os.sep, 1)[-1]}:{frames[-1].name}" if frames else None


def fingerprint(error_type: str, location: str | None) -> str:
    """A stable hash of the error type and where it happened (no line numbers: they move with edits)."""
    return hashlib.sha256(f"{error_type}|{location or ''}".encode()).hexdigest()[:32]


def format_stack(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
