"""Test-suite-wide configuration: fixtures of the real peers, loaded as plugins."""

pytest_plugins = ["tests.peers.llama_fixtures", "tests.peers.vault_fixtures"]
