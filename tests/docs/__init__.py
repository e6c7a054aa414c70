"""Tests of the documentation site (mkdocs.yml, docs/hooks/)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
