"""The ``ingestd`` command: one module per command group."""
