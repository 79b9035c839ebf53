"""The Torwart wire contract (shared/PROTOCOL.md) in code.

Both the edge agent and the hub import this package; it imports neither. It holds topic
building and parsing, one typed message per payload with strict validation, the signed
envelope, credential hashing and the enrollment seal.
"""

PROTOCOL_VERSION = "v1"


def software_version() -> str:
    """The installed Torwart version (``status``/``system.started`` carry it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torwart")
    except PackageNotFoundError:
        return "0+unknown"
