"""The project's own errors. The CLI turns each into one line and exit code 2."""


class AdvisorError(Exception):
    """A problem the user can fix: bad input, bad usage. Never shown as a traceback."""


class InputError(AdvisorError):
    """A file or value the user gave cannot be read or makes no sense."""


class RuleError(AdvisorError):
    """A rule file in the knowledge base is malformed (file, rule and field in the message)."""
