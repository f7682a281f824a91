"""What differs between the CKAN lines the plugin runs on (2.10, 2.11, 2.12).

One place feature-detects them, so the rest of the plugin imports names from
here instead of guessing a version:

- CKAN 2.12 stores uploads through file-keeper (``ckan.lib.files`` and the
  ``file_keeper`` package); 2.10 and 2.11 have neither, and their uploaders
  keep plain files under ``ckan.storage_path``.
"""

from __future__ import annotations

from typing import Any

try:  # CKAN 2.12+
    import file_keeper
    from ckan.lib import files
except ImportError:  # CKAN 2.10, 2.11: uploads are plain files
    file_keeper = None
    files = None


def keeper_storage(upload: Any) -> Any | None:
    """The file-keeper storage behind a resource uploader, or None when the
    upload is a plain file (CKAN 2.10/2.11, or a 2.12 uploader of the old
    kind)."""
    storage = getattr(upload, "storage", None)
    if file_keeper is not None and isinstance(storage, file_keeper.Storage):
        return storage
    return None
