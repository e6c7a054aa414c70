"""HTTP routers, one per domain, assembled in :func:`sync_server.app.create_app`."""
