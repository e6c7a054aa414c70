"""The bundle's entry point (PyInstaller runs this script): the ``hushchat`` command."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
