"""``python -m ingestd``: the same as the ``ingestd`` command."""

from ingestd.cli.main import entry_point

entry_point()
