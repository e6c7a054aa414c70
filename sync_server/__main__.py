"""``python -m sync_server`` runs the ``hushchat-sync`` command."""

import sys

from sync_server.cli import main

sys.exit(main())
