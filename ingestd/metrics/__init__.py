"""Prometheus metrics (``/metrics``).

``counters.py``: what the daemon's own process counts (mail received, SMTP
replies, poll errors, worker restarts). ``processing.py``: what processing
counts, wherever it runs — worker processes write prometheus-client's
multiprocess files, which the daemon reads back at each scrape, so the
figures are right with process isolation (and survive a worker's death).
``state.py``: figures read from the database at each scrape (backlog, oldest
pending, quarantine, mailbox states), so every instance on one PostgreSQL
reports the same truth. ``exposition.py``: the text the endpoint answers.
"""
