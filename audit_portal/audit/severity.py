"""The one place that maps an exception to an ErrorSeverity."""

from __future__ import annotations

from marshmallow import ValidationError as MarshmallowValidationError
from wtforms.validators import ValidationError as WTFormsValidationError

from .enums import ErrorSeverity

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
