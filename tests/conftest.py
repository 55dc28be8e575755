"""Shared pytest configuration. Fixtures live in tests/fixtures/, one module per concern."""

import os

# Nothing may reach a model hub, and tests never talk to real Azure or Anthropic.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest_plugins = [
    "tests.fixtures.services",  # real Redis and Azurite
    "tests.fixtures.index",     # built index bundles
    "tests.fixtures.fakes",     # fake Anthropic and Azure Maps servers
    "tests.fixtures.app",       # the app over real components, and the local host
]
