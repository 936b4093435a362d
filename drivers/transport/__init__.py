"""Transports: how bytes reach a handpiece. One device URL picks one (see url.py)."""

from .base import Transport, TransportError
from .url import DeviceUrl, open_transport, parse_device_url

__all__ = ["DeviceUrl", "Transport", "TransportError", "open_transport", "parse_device_url"]
