"""The Qt user interface (PySide6 + qasync). The only package that imports Qt.

Widgets call services (``app.chat.service.ChatService``, ``app.vault.Vault``)
through ``app.ui.tasks``; they never run SQL or HTTP themselves.
"""
