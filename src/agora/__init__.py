"""Agora: the security and real-time core of a social platform."""

__version__ = "0.1.0"
