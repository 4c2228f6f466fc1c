"""Cancels and tool results for a run another replica executes, carried by PostgreSQL (LISTEN/NOTIFY).

    reply = await store.relay.send(owner_id, Command("cancel", run_id), within_s=5)   # replica B
    store.relay.serve(handle)                                                           # replica A

B writes the command as a row of `commands` and, in the same transaction, sends
`NOTIFY fusionkit_commands, '<owner id>:<command id>'`; a NOTIFY is delivered at commit, so the
owner never hears of a row it cannot read yet. The owner (A) reads the row, carries it out with its
handler, writes the reply into the row and sends `NOTIFY fusionkit_replies, '<command id>'`. B
reads the reply and deletes the row. A body of any size travels in the row (a NOTIFY payload is
limited to 8000 bytes), and a lost notification only delays an answer: B looks at the row again
every half second. B sends nothing to a router whose lease has lapsed (OwnerGone), and gives up
after `within_s` (OwnerSilent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from server.store.errors import StoreError
from server.store.relay import Command, CommandHandler, OwnerGone, OwnerSilent, Reply

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import DictRow

    from server.store.pgstore import PgRunStore

__all__ = ["COMMANDS_CHANNEL", "REPLIES_CHANNEL", "PgCommandRelay"]

log = logging.getLogger("fusionkit.store")

COMMANDS_CHANNEL = "fusionkit_commands"  # payload: "<owner id>:<command id>"
REPLIES_CHANNEL = "fusionkit_replies"  # payload: "<command id>"
LOOK_AGAIN_S = 0.5  # a sender reads its command's row this often even when no reply was heard
KEEP_COMMANDS = "1 hour"  # rows a sender left behind (it died waiting) are pruned after this


Work = Callable[["AsyncConnection[DictRow]"], Awaitable[Any]]


class PgCommandRelay:
    """The PostgreSQL store's CommandRelay: commands to the replica that owns a run, and its replies."""

    channels = (COMMANDS_CHANNEL, REPLIES_CHANNEL)

    def __init__(self, store: PgRunStore) -> None:
        self.store = store
        self._handler: CommandHandler | None = None
        self._heard: dict[int, asyncio.Event] = {}  # commands this replica sent, waiting for their reply
        self._answering: set[asyncio.Task[None]] = set()

    def serve(self, handler: CommandHandler) -> None:
        self._handler = handler

    async def send(self, owner_id: str, command: Command, within_s: float) -> Reply:
        if not await self.store.lease_is_live(owner_id):
            raise OwnerGone(owner_id)
        command_id: int = await self.store._writing(self._insert_work(owner_id, command))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        heard = self._heard[command_id] = asyncio.Event()
        try:
            while True:
                heard.clear()
                reply: Reply | None = await self.store._reading(self._reply_work(command_id))
                if reply is not None:
                    return reply
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise OwnerSilent(owner_id, within_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(heard.wait(), min(remaining, LOOK_AGAIN_S))
        finally:
            self._heard.pop(command_id, None)
            with contextlib.suppress(StoreError):
                self.store._enqueue(
                    self._delete_work(command_id), writes=True, wait=False, what=f"removing command {command_id}"
                )

    def heard(self, channel: str, payload: str) -> None:
        """A notification on one of `channels`, from the store's listening connection."""
        if channel == COMMANDS_CHANNEL:
            owner_id, _, command_id = payload.rpartition(":")
            if owner_id == self.store.owner_id and self._handler is not None and command_id.isdigit():
                task = asyncio.create_task(self._answer(int(command_id), self._handler))
                self._answering.add(task)
                task.add_done_callback(self._answering.discard)
        elif channel == REPLIES_CHANNEL and payload.isdigit():
            waiting = self._heard.get(int(payload))
            if waiting is not None:
                waiting.set()

    async def _answer(self, command_id: int, handler: CommandHandler) -> None:
        try:
            command: Command | None = await self.store._reading(self._command_work(command_id))
            if command is None:
                return  # answered already, or its sender gave up and removed it
            try:
                reply = await handler(command)
            except Exception:
                log.exception("command %s for run %s failed", command.kind, command.run_id)
                error = {"message": "the router executing this run failed to carry the command out"}
                reply = Reply(500, {"error": {**error, "type": "server_error", "code": "internal_error"}})
            await self.store._writing(self._answer_work(command_id, reply))
        except StoreError as exc:
            log.warning("command %d could not be answered: %s", command_id, exc)

    async def close(self) -> None:
        for task in list(self._answering):
            task.cancel()
        await asyncio.gather(*self._answering, return_exceptions=True)

    # -- works ----------------------------------------------------------------------------------

    def _insert_work(self, owner_id: str, command: Command) -> Work:
        async def work(conn: AsyncConnection[DictRow]) -> int:
            cursor = await conn.execute(
                "INSERT INTO commands (owner_id, run_id, kind, body_json) VALUES (%s, %s, %s, %s) RETURNING id",
                (owner_id, command.run_id, command.kind, json.dumps(command.body)),
            )
            row = await cursor.fetchone()
            assert row is not None
            await conn.execute("SELECT pg_notify(%s, %s)", (COMMANDS_CHANNEL, f"{owner_id}:{row['id']}"))
            return int(row["id"])

        return work

    def _command_work(self, command_id: int) -> Work:
        async def work(conn: AsyncConnection[DictRow]) -> Command | None:
            cursor = await conn.execute(
                "SELECT kind, run_id, body_json FROM commands WHERE id = %s AND reply_json IS NULL", (command_id,)
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            return Command(kind=row["kind"], run_id=row["run_id"], body=json.loads(row["body_json"]))

        return work

    def _answer_work(self, command_id: int, reply: Reply) -> Work:
        async def work(conn: AsyncConnection[DictRow]) -> None:
            body = json.dumps({"status": reply.status, "body": reply.body}, default=str)
            await conn.execute(
                "UPDATE commands SET reply_json = %s, replied_at = now() WHERE id = %s", (body, command_id)
            )
            await conn.execute("SELECT pg_notify(%s, %s)", (REPLIES_CHANNEL, str(command_id)))

        return work

    def _reply_work(self, command_id: int) -> Work:
        async def work(conn: AsyncConnection[DictRow]) -> Reply | None:
            cursor = await conn.execute("SELECT reply_json FROM commands WHERE id = %s", (command_id,))
            row = await cursor.fetchone()
            if row is None or row["reply_json"] is None:
                return None
            answer = json.loads(row["reply_json"])
            return Reply(status=int(answer["status"]), body=answer["body"])

        return work

    def _delete_work(self, command_id: int) -> Work:
        async def work(conn: AsyncConnection[DictRow]) -> None:
            await conn.execute("DELETE FROM commands WHERE id = %s", (command_id,))

        return work

    @staticmethod
    async def prune(conn: AsyncConnection[DictRow]) -> None:
        """Remove the commands whose senders left them behind (inside the store's prune)."""
        await conn.execute(f"DELETE FROM commands WHERE created_at < now() - interval '{KEEP_COMMANDS}'")
