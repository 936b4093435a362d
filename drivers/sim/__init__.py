"""The simulated handpiece: firmware model, command handlers, fault injection, and the servers
that run it in real time (pty, TCP, in-process, USB)."""

from .faults import InjectionError
from .firmware import SimulatedHandpiece
from .models import MODELS, HandpieceModel

__all__ = ["MODELS", "HandpieceModel", "InjectionError", "SimulatedHandpiece"]
