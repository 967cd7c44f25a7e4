"""Errors raised by the skills library; each carries a message a user can act on."""

from __future__ import annotations

__all__ = [
    "IsolationUnavailable",
    "PackageError",
    "ParamError",
    "SandboxError",
    "SkillError",
]


class SkillError(Exception):
    """Base class of every error raised by ``skills``."""


class PackageError(SkillError):
    """A skill package (a SKILL.md folder, ``skill.json``, a zip) is malformed.

    The message names the file and says what is wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ParamError(SkillError):
    """Parameters (or a result) break their JSON Schema; ``violations`` lists each problem."""

    def __init__(self, violations: list[str], *, what: str = "parameters") -> None:
        self.violations = list(violations)
        lines = "\n".join(f"- {v}" for v in self.violations)
        super().__init__(f"invalid {what} ({len(self.violations)} problem(s)):\n{lines}")


class SandboxError(SkillError):
    """The sandbox itself could not run a program (not an error raised by the program)."""


class IsolationUnavailable(SandboxError):
    """No isolation can start here, so executable skills do not run (fail closed).

    The message says what is missing and how to install it; an operator may still run skills
    without isolation through ``RunLimits(unsafe_no_isolation=True)`` (never over MCP).
    """
