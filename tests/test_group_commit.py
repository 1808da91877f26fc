"""Group commit: concurrent sessions share commits, and each 250 still follows its commit."""

from __future__ import annotations

import asyncio
from typing import Any

import aiosmtplib

from tests.test_smtp_intake import SIMPLE

SESSIONS = 24


async def _send_all(port: int, daemon: Any) -> list[tuple[int, bool]]:
    """Send one message per session concurrently; note whether its row existed at 250."""

    async def one(i: int) -> tuple[int, bool]:
        body = SIMPLE.replace(b"<m1@", f"<gc{i}@".encode())
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        await client.connect()
        try:
            _, reply = await client.sendmail("alice@acme.example", ["support@example.com"], body)
        finally:
            await client.quit()
        row_id = int(reply.rsplit(" ", 1)[1])
        # Checked at the moment the 250 arrived: the row must already be committed.
        visible = await asyncio.to_thread(
            lambda: any(r.id == row_id and bytes(r.raw) == body for r in daemon.rows())
        )
        return row_id, visible

    return await asyncio.gather(*(one(i) for i in range(SESSIONS)))


def test_concurrent_sessions_share_commits(daemon: Any) -> None:
    """24 concurrent sessions are all stored, in fewer commits than messages."""
    before = daemon.services.committer.commits
    results = asyncio.run(_send_all(daemon.port, daemon))
    commits = daemon.services.committer.commits - before
    assert all(visible for _, visible in results)
    assert len({row_id for row_id, _ in results}) == SESSIONS
    assert len(daemon.rows()) == SESSIONS
    assert commits < SESSIONS, f"{commits} commits for {SESSIONS} messages: no grouping"


def test_commit_batch_max_one_commits_each_message_alone(
    start_daemon: Any, tmp_path: Any, sqlite_url: str
) -> None:
    """smtp.commit_batch_max: 1 turns grouping off: one commit per message, still all stored."""
    from tests.conftest import base_config, write_config

    config = base_config(sqlite_url)
    config["smtp"]["commit_batch_max"] = 1
    daemon = start_daemon(write_config(tmp_path, config))
    results = asyncio.run(_send_all(daemon.port, daemon))
    assert all(visible for _, visible in results)
    assert daemon.services.committer.commits == SESSIONS
