"""Mailbox pulls: sources that fetch mail from connected mailboxes (IMAP; Gmail and Graph next).

    schedule.py     one APScheduler job per pulled mailbox, in the daemon's loop
    poll.py         one poll of one mailbox: lease, list, fetch, commit with the checkpoint
    pull.py         the interface every pull source implements (and its contract tests test)
    lease.py        mailbox_states: who polls a mailbox now, and how it is doing
    checkpoints.py  mailbox_checkpoints: where each folder's last poll stopped
    retry.py        temporary failures retried inside one poll (tenacity)
    secrets.py      passwords and tokens read from files or the environment
    imap.py         the IMAP source (imaplib), imap_wire.py its protocol details
    registry.py     the source a mailbox's settings name
"""
