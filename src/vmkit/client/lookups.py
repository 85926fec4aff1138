"""The SDK's calls on one template or network by name, and calling off a capture."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import answers as A
from .connection import Connection, seg

if TYPE_CHECKING:
    from ..models import Network, Template


class LookupCalls(Connection):
    """Mixed into :class:`vmkit.Client`."""

    def get_template(self, name: str) -> Template:
        """Template ``name``; raises NotFoundError if there is none."""
        return self._call("GET", f"/templates/{seg(name, 'template')}", A.TEMPLATE)

    def get_network(self, name: str) -> Network:
        """Private network ``name``, with the VMs on it; raises NotFoundError if there is
        none."""
        return self._call("GET", f"/networks/{seg(name, 'network')}", A.NETWORK)

    def cancel_capture(self, name: str) -> None:
        """End VM ``name``'s capture and throw away what it recorded (``stop_capture``
        keeps it)."""
        self._do("DELETE", f"/vms/{seg(name)}/capture")
