"""The one base of every error the toolkit raises on purpose.

A `SlsgError`'s message says what is wrong and what to do about it, so the CLIs catch this one class, print the
message and exit non-zero without a traceback; anything else that escapes is a bug and keeps its traceback.
Each subclass also keeps the built-in class it always had (`ValueError`, `RuntimeError`), so callers that catch
those still do. It lives in the bottom layer so that every layer can raise it.
"""

from __future__ import annotations


class SlsgError(Exception):
    """An error whose message tells the user what is wrong and what to do."""
