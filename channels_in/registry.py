"""Which adapter serves which channel kind. Adapters register themselves on import; the app's
ready() imports every platform folder. `tickets` never imports this module."""

from __future__ import annotations

from importlib import import_module

from .base import Adapter

_ADAPTERS: dict[str, Adapter] = {}

PLATFORM_MODULES = (
    "telegram",
    "whatsapp",
    "messenger",
    "x",
    "viber",
    "vk",
    "sms",
    "email",
    "widget",
)


def register(adapter_class: type[Adapter]) -> type[Adapter]:
    """Class decorator: @register on an Adapter subclass makes it serve its `kind`."""
    _ADAPTERS[adapter_class.kind] = adapter_class()
    return adapter_class


def adapter_for(kind: str) -> Adapter | None:
    return _ADAPTERS.get(kind)


def registered_kinds() -> list[str]:
    return sorted(_ADAPTERS)


def load_adapters() -> None:
    for name in PLATFORM_MODULES:
        try:
            import_module(f"channels_in.{name}.adapter")
        except ModuleNotFoundError as exc:
            # A platform folder that does not exist yet; any other missing module is a bug.
            if exc.name not in (f"channels_in.{name}", f"channels_in.{name}.adapter"):
                raise
