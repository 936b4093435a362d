"""The simulated handpiece: firmware model, fault injection and servers (pty, TCP, in-process)."""

from .faults import InjectionError
from .firmware import SimulatedHandpiece
from .models import MODELS, HandpieceModel

__all__ = ["MODELS", "HandpieceModel", "InjectionError", "SimulatedHandpiece"]
