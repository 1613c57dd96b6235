"""Reading what actually landed in JetStream (a real server), for assertions."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import nats


@dataclass
class StoredMessage:
    seq: int
    subject: str
    msg_id: str | None
    envelope: dict
    headers: dict[str, str]


async def _read(url: str, stream: str) -> list[StoredMessage]:
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=1)
    try:
        jsm = nc.jsm()
        try:
            info = await jsm.stream_info(stream)
        except nats.js.errors.NotFoundError:
            return []
        messages = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            if info.state.messages == 0:
                break
            raw = await jsm.get_msg(stream, seq)
            messages.append(
                StoredMessage(
                    seq=seq,
                    subject=raw.subject,
                    msg_id=(raw.headers or {}).get("Nats-Msg-Id"),
                    envelope=json.loads(raw.data),
                    headers=dict(raw.headers or {}),
                )
            )
        return messages
    finally:
        await nc.close()


def stream_messages(url: str, stream: str) -> list[StoredMessage]:
    return asyncio.run(_read(url, stream))
