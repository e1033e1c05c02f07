"""User-facing errors: one line naming the file, the line, the key and what to do; exit status 2."""
from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for (file, key, name, path), never a bug in the workbench.

    Printed by the CLI as ``FILE:LINE: key.path: message`` (the parts that are known), exit 2.
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 key: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.key = key

    def located(self, file: str | None = None, line: int | None = None) -> "UserError":
        """Fill in the file and line where they are not known yet; returns self."""
        self.file = self.file or file
        self.line = self.line or line
        return self

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class ConfigError(UserError):
    """A problem with one key of the experiment file, raised where it is found; the loader adds the
    file and line."""

    def __init__(self, key: str, message: str):
        super().__init__(message, key=key)
