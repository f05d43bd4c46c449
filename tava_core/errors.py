"""Errors a user can act on: each names the file (and line) at fault and how to fix it."""
from __future__ import annotations

from pathlib import Path


class TavaError(Exception):
    """Base class for every error tava raises on purpose.

    The CLI prints these without a traceback: the message alone must say what is wrong,
    where, and what to do about it.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 hint: str | None = None) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        text = f"{where}{self.message}"
        if self.hint:
            text += f"\n  fix: {self.hint}"
        return text


class InputError(TavaError):
    """Bad input data: malformed records, missing fields, wrong encoding, unknown ids."""


class ConfigError(TavaError):
    """A configuration that cannot work (caught before any expensive step starts)."""


class ModelLoadError(TavaError):
    """A model directory that does not exist or will not load."""


class IntegrityError(TavaError):
    """Data on disk that does not match its manifest (checksum, fingerprint, dimension)."""


class TrainingError(TavaError):
    """Training that diverged (NaN/inf, collapse) and was stopped before saving anything broken."""
