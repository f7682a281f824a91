"""The runtime settings in force: the deployed values (the environment),
overridden by those CKAN pushed with ``PUT /api/settings`` and the bridge
keeps in its database. New launches follow a change at once."""

from __future__ import annotations

from .errors import BridgeError
from .settings import RUNTIME_KEYS, Settings, validate_runtime
from .store import AsyncStore, iso

# deployed values shown by GET /api/settings next to the runtime ones
DEPLOYED_KEYS = (
    "hub_url", "hub_base_url", "api_url", "spawner", "network", "storage_path",
    "max_resource_size", "download_timeout", "fetch_allowlist",
)


class RuntimeSettings:
    def __init__(self, settings: Settings, db: AsyncStore):
        self.settings = settings
        self.db = db
        self._values: dict | None = None
        self.listeners = []  # called with no arguments after a change

    def current(self) -> dict:
        """The values in force. Only ``update`` changes them, so the
        database is read once (at start, before the loop serves anything)."""
        if self._values is None:
            values = self.settings.runtime_defaults()
            saved, _ = self.db.sync.saved_settings()
            values.update({k: v for k, v in saved.items() if k in RUNTIME_KEYS})
            self._values = values
        return dict(self._values)

    async def document(self) -> dict:
        values = {k: getattr(self.settings, k) for k in DEPLOYED_KEYS}
        values.update(self.current())
        _, updated = await self.db.saved_settings()
        values["updated_at"] = iso(updated)
        return values

    async def update(self, changes) -> dict:
        if not isinstance(changes, dict) or not changes:
            raise BridgeError(400, "invalid", "send a JSON object of settings")
        parsed, errors = {}, {}
        for key, value in changes.items():
            if key == "updated_at":
                continue
            try:
                parsed[key] = validate_runtime(key, value)
            except ValueError as e:
                errors[key] = str(e)
        if errors:
            raise BridgeError(400, "invalid", "; ".join(errors.values()), fields=errors)
        await self.db.save_settings(parsed)
        self._values = {**self.current(), **parsed}
        for listener in self.listeners:
            listener()
        return await self.document()
