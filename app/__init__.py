"""The Hushchat desktop app: services (vault, store, chat, privacy, sync) and the Qt UI."""

__version__ = "0.1.0"
