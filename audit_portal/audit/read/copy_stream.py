"""One text column of a query, streamed by PostgreSQL's ``COPY ... TO STDOUT`` from a thread, in batches.

A server-side cursor makes PostgreSQL and Python take turns: a FETCH waits until Python has turned the previous batch
into text and sent it, and Python waits while PostgreSQL builds the next one. COPY streams without waiting for the
client. psycopg2's ``copy_expert`` pushes the rows into a file object, so it runs in a thread that hands batches to
the response through a one-slot queue: PostgreSQL builds the next rows while Python sends the last ones (an export
of 300,000 JSON items took a quarter to a third less time). When the client reads slowly the queue fills, the thread
stops reading and PostgreSQL waits on its socket, so memory stays at a few batches. The binary format gives each
value's bytes as stored, with no escaping to undo.

A COPY is planned for all its rows, a cursor for the first tenth: left alone, the planner would sort the whole
result (in parallel workers) before sending its first row, which at millions of rows means a long silence (longer
than gunicorn's timeout) and gigabytes of temporary files, where the cursor walked the index in order. So the COPY
is planned as the cursor was: no parallel workers (a cursor never has them; here, through Gather Merge, they were
also slower), and, unless ``sort`` allows it (a small result, which sorts in moments), no sort where an index gives
the order (``enable_sort = off`` only makes a sort the last resort).

The query is bound by SQLAlchemy as for any execution (type processors included): the stream declares it as a
server-side cursor (planned, not run), keeps the text sent, and runs it as COPY. That first statement takes the
snapshot of the stream's REPEATABLE READ transaction, so the rows are those of the moment the stream was made, not
of the moment the thread starts, on the first read: an export holds the rows it counted, not also events written
meanwhile, such as its own request's. A stream that is never read (a HEAD request) starts no thread.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Connection

#: The binary COPY format: a 19-byte header before the first row, then per row a 16-bit field count and a 32-bit
#: length before the value, and a 16-bit -1 after the last row.
_HEADER = 19
_ROW_PREFIX = 6
_TRAILER = b"\xff\xff"
_END = object()


class _Stopped(Exception):
    """The reader went away: the thread stops reading the COPY."""


class _Batcher:
    """The file object ``copy_expert`` writes each row's message to: collects rows into batches."""

    def __init__(self, stream: CopyStream):
        self.stream, self.rows, self.header = stream, [], True

    def write(self, data: bytes) -> int:
        if self.stream.stopped.is_set():
            raise _Stopped
        value = data[_HEADER:] if self.header else data
        self.header = False
        if value != _TRAILER:
            self.rows.append(value[_ROW_PREFIX:].decode())
            if len(self.rows) == self.stream.batch:
                self.stream.hand_over(self.rows)
                self.rows = []
        return len(data)


class CopyStream:
    """Batches (lists of ``batch`` strings) of a one-column query's rows; ``close()`` ends it early."""

    def __init__(self, connection: Connection, query, batch: int, *, sort: bool = False):
        self.connection, self.batch = connection, batch
        self.stopped = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        sent = []

        def keep(conn, cursor, statement, parameters, context, executemany):
            sent.append(cursor.mogrify(statement, parameters).decode())

        connection.execution_options(isolation_level="REPEATABLE READ")
        connection.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
        if not sort:
            connection.exec_driver_sql("SET LOCAL enable_sort = off")
        event.listen(connection, "before_cursor_execute", keep)
        try:
            connection.execute(query.execution_options(stream_results=True)).close()
        finally:
            event.remove(connection, "before_cursor_execute", keep)
        self._dbapi = connection.connection.dbapi_connection
        self._thread = threading.Thread(target=self._copy, args=(f"COPY ({sent[-1]}) TO STDOUT (FORMAT binary)",),
                                        name="export-copy", daemon=True)

    def _copy(self, sql: str) -> None:
        batcher = _Batcher(self)
        try:
            with self._dbapi.cursor() as cursor:
                cursor.copy_expert(sql, batcher)
            if batcher.rows:
                self.hand_over(batcher.rows)
            self.hand_over(_END)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - raised again in the reading thread
            with contextlib.suppress(_Stopped):
                self.hand_over(exc)

    def hand_over(self, item) -> None:
        """Put ``item`` in the queue, waiting while the reader has not taken the previous one."""
        while True:
            if self.stopped.is_set():
                raise _Stopped
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return

    def __iter__(self) -> Iterator[list[str]]:
        self._thread.start()
        while (item := self._queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop the COPY if it is still running (the client went away), and wait for the thread. A COPY stopped
        halfway leaves its connection unusable: it is closed rather than given back to the pool."""
        if not self._thread.is_alive():
            return
        self.stopped.set()
        self._dbapi.cancel()  # a query still working on its next row stops at once
        self._thread.join()
        self.connection.invalidate()
