"""The errors the manifest readers raise; the commands turn them into clean messages."""


class ManifestError(Exception):
    """A manifest could not be built at all (no sheet, unreadable sheet, bad arguments)."""


class SheetError(ManifestError):
    """An annotation sheet was found but no sheet of it has the expected header."""
