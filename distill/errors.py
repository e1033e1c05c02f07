"""User-facing errors: one line naming the file, the line, the key and what to do; exit status 2."""
from __future__ import annotations

import re

ECHO_LIMIT = 60  # characters of a user value echoed in a message
_LONG_TOKEN = 200  # a run of characters without spaces longer than this is shortened anyway
_LONG_LINE = 1000  # a message longer than this keeps its start and its end


def shorten(value, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters with an ellipsis, for echoing a
    user value (a name, a path, a YAML value) in a message."""
    text = value if isinstance(value, str) else str(value)
    text = repr(text[:limit * 4])[1:-1] if not text.isprintable() else text[:limit * 4]
    if len(text) > limit or len(value if isinstance(value, str) else str(value)) > limit * 4:
        text = text[:limit - 1] + "…"
    return f"'{text}'" if isinstance(value, str) else text


def one_line(text: str) -> str:
    """``text`` as one printable line: line breaks and control characters escaped, any run of
    non-space characters longer than 200 cut to 60 with an ellipsis (an echoed huge value)."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    text = re.sub(r"\S{%d,}" % (_LONG_TOKEN + 1), lambda m: m.group(0)[:ECHO_LIMIT - 1] + "…",
                  text)
    if len(text) > _LONG_LINE:  # many short words of an echoed value: keep the start and the advice
        text = text[:_LONG_LINE - 300] + " … " + text[-300:]
    return text


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
        key = ""
        if self.key:
            key = ".".join(part if len(part) <= ECHO_LIMIT else part[:ECHO_LIMIT - 1] + "…"
                           for part in str(self.key).split(".")) + ": "
        return one_line(f"{where}{key}{self.message}")


class ConfigError(UserError):
    """A problem with one key of the experiment file, raised where it is found; the loader adds the
    file and line."""

    def __init__(self, key: str, message: str):
        super().__init__(message, key=key)
