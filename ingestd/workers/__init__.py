"""Processing workers: one loop, run in threads or in supervised processes."""
