"""The unlock agent: an unlock that lasts across ``hushchat`` commands, like ssh-agent.

``hushchat unlock`` unlocks the vault once and hands the two database keys to a small
background process (``python -m app.agent``) that serves them on a per-user Unix socket;
an unlocked window serves the same socket. CLI commands that only need the databases ask
it first (:func:`app.agent.client.request_keys`) and pay no passphrase KDF.

Modules: ``keys`` (what is handed out), ``protocol`` (socket path, frames, peer
credentials), ``client`` (stdlib-only, on every command's start-up path), ``server``
(asyncio; the agent process and the window), ``cli`` (``hushchat unlock`` / ``lock``).
Nothing here imports Qt, and this package's ``__init__`` imports nothing.
"""
