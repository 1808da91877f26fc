"""Processing: stored mail → tickets and actions, through named stages (see order.py)."""
