"""Configuration: one YAML file validated into immutable settings."""

from ingestd.config.load import config_path, load_settings
from ingestd.config.settings import IngestdSettings, Mailbox

__all__ = ["IngestdSettings", "Mailbox", "config_path", "load_settings"]
