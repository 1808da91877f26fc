"""Database: tables, connections and schema management."""
