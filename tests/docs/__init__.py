"""Tests of the documentation site and the separately built packages."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
