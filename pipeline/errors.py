"""Errors that are the user's to fix.

The command line prints a ``UserError`` as one line and exits with code 2;
anything else is a bug in tinyforge and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input: a recipe, a path, a flag."""


class RecipeError(UserError):
    """A recipe that cannot be read or does not validate."""


class SchemaError(UserError):
    """Records that do not match the shard contract in ``schemas/``."""


class IntegrityError(UserError):
    """A published dataset whose files do not match its manifest."""


class BuildFailed(Exception):
    """A build that ran correctly but cannot produce a dataset (e.g. every record was rejected)."""
