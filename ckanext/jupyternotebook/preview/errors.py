"""Why a notebook has no preview: each error's ``message()`` is the sentence
the visitor reads, in their language."""

from __future__ import annotations

import ckan.plugins.toolkit as tk
from ckan.lib.formatters import localised_filesize


class PreviewError(Exception):
    """A notebook that cannot be previewed; ``message()`` is for the user."""

    code = "preview_error"

    def message(self) -> str:
        return tk._("This notebook cannot be previewed.")


class NotebookTooLarge(PreviewError):
    code = "too_large"

    def __init__(self, limit: int):
        super().__init__(f"notebook larger than {limit} bytes")
        self.limit = limit

    def message(self) -> str:
        return tk._(
            "This notebook is too large to preview (the limit is {size})."
            " You can still download it or run it."
        ).format(size=localised_filesize(self.limit))


class MalformedNotebook(PreviewError):
    """Not JSON at all (binary, truncated, another format)."""

    code = "malformed"

    def message(self) -> str:
        return tk._(
            "This file is not a valid Jupyter notebook: it is not readable"
            " JSON. It may be damaged or in another format."
        )


class InvalidNotebook(PreviewError):
    """JSON, but nothing nbformat can read, upgrade or repair into a notebook."""

    code = "invalid"

    def message(self) -> str:
        return tk._(
            "This file is not a valid Jupyter notebook: its structure does"
            " not follow the notebook format."
        )


class NotebookUnavailable(PreviewError):
    """The file could not be read (missing upload, refused or failed URL)."""

    code = "unavailable"

    def message(self) -> str:
        return tk._("The notebook file could not be read for a preview.")
