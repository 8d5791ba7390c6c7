"""AsyncAPI 3.0 for the app's WebSocket routes: ``utils.get_asyncapi`` and ``utils.AsyncAPIBuilder``."""

from .utils import AsyncAPIBuilder, get_asyncapi

__all__ = ["AsyncAPIBuilder", "get_asyncapi"]
