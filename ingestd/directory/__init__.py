"""The directory (clients, sites, users, agents, suppliers) as a YAML file: import and export."""

from ingestd.directory.document import DirectoryDocument
from ingestd.directory.export import export_directory, to_yaml
from ingestd.directory.load import load_directory
from ingestd.directory.sync import ImportSummary, import_directory

__all__ = [
    "DirectoryDocument",
    "ImportSummary",
    "export_directory",
    "import_directory",
    "load_directory",
    "to_yaml",
]
