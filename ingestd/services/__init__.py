"""Queries and JSON records shared by the CLI and the HTTP API.

Each function takes a SQLAlchemy ``Connection`` (the caller owns the
transaction) and returns plain records: dictionaries whose keys and values are
the ``--json`` contract of the matching ``ingestd`` command. Listings return a
``Page`` that also counts every row the filter matched, so a caller can say
when it stopped at its limit. Errors are ``NotFound`` / ``InvalidRequest``.

This package's ``__init__`` and ``vocabulary`` import nothing heavy, so the
CLI can build its argument parsers from them without loading SQLAlchemy.
"""
