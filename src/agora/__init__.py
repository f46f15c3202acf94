"""Agora: the security and real-time core of a social platform."""

# The one place the version is written: the package metadata (pyproject.toml's dynamic
# version) and the OpenAPI documents (web.app) read it from here.
__version__ = "0.1.0"
