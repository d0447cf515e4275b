"""Secrets (webhook URLs, routing keys, API keys) come from environment variables or files, never the routing file.

A routing file is committed to git and printed in reviews; a Slack webhook URL *is* a credential. ``Secret``
hides its value from ``repr``/``str`` so it cannot leak into logs or tracebacks by accident.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class SecretError(ValueError):
    """A referenced secret is missing; the message names the variable or file, never a value."""


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: ``env`` (variable name) or ``file`` (path; surrounding whitespace stripped)."""

    env: str | None = None
    file: str | None = None
    literal: str | None = None  # only for fields that are not secret but accept env/file too (e.g. webhook url)

    def resolve(self, environ: dict[str, str] | None = None) -> Secret:
        environ = os.environ if environ is None else environ
        if self.literal is not None:
            return Secret(self.literal)
        if self.env is not None:
            value = environ.get(self.env)
            if not value:
                raise SecretError(f"environment variable {self.env} is not set or empty")
            return Secret(value)
        try:
            value = Path(self.file).read_text().strip()
        except OSError as exc:
            raise SecretError(f"cannot read secret file {self.file}: {exc.strerror}") from None
        if not value:
            raise SecretError(f"secret file {self.file} is empty")
        return Secret(value)

    def describe(self) -> str:
        return f"${self.env}" if self.env else (f"file {self.file}" if self.file else "inline value")
