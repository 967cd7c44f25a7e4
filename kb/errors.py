"""Domain errors. Each carries a message a user can act on; the CLI prints it as one line and the
MCP server returns it as a tool error."""


class KBError(Exception):
    """Base class of every error the store raises on purpose."""


class NotFound(KBError):
    """An id, name or path that does not exist (in this namespace)."""


class Invalid(KBError, ValueError):
    """Input that breaks the schema or a limit; the message names the field."""


class Conflict(KBError):
    """The operation clashes with what is stored (a duplicate name and version, a model mismatch)."""


class ModelMismatch(Conflict):
    """The store's vectors were made by another embedding model than the one configured."""


class SandboxError(KBError):
    """A skill program could not be run, or was stopped by a limit."""


class ImportFailed(Invalid):
    """A file could not be imported; the message names the file and the record."""
