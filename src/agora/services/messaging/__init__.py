"""Messaging: conversations, messages, channels, presence, typing, offline sync, gRPC."""
