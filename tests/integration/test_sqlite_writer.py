"""The group-commit writer: batched jobs, each all-or-nothing on its own."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from miri.infra.sqlite import Database


@pytest.fixture
async def db(tmp_path):
    database = Database(tmp_path / "w.sqlite3")
    await database.write(lambda c: c.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))
    yield database
    await database.close()


def rows(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    return [tuple(r) for r in conn.execute("SELECT k, v FROM t ORDER BY k")]


async def test_a_job_that_fails_after_writing_is_undone_alone(db):
    def good(n: int):
        return lambda c: c.execute("INSERT INTO t VALUES (?, 'ok')", (n,)).lastrowid

    def writes_then_fails(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (100, 'half')")
        raise ValueError("refused after writing")

    def fails_before_writing(c: sqlite3.Connection) -> None:
        raise KeyError("refused before writing")

    jobs = [good(1), writes_then_fails, good(2), fails_before_writing, good(3)] * 1
    results = await asyncio.gather(*(db.write(j) for j in jobs), return_exceptions=True)
    assert results[0] == 1 and results[2] == 2 and results[4] == 3
    assert isinstance(results[1], ValueError) and isinstance(results[3], KeyError)
    assert await db.read(rows) == [(1, "ok"), (2, "ok"), (3, "ok")]
    assert db.batches >= 1


async def test_a_constraint_violation_fails_only_its_job(db):
    await db.write(lambda c: c.execute("INSERT INTO t VALUES (1, 'first')"))

    def update_then_duplicate(c: sqlite3.Connection) -> None:
        c.execute("UPDATE t SET v = 'changed' WHERE k = 1")
        c.execute("INSERT INTO t VALUES (1, 'duplicate')")

    results = await asyncio.gather(
        db.write(update_then_duplicate),
        db.write(lambda c: c.execute("INSERT INTO t VALUES (2, 'second')").rowcount),
        return_exceptions=True,
    )
    assert isinstance(results[0], sqlite3.IntegrityError) and results[1] == 1
    assert await db.read(rows) == [(1, "first"), (2, "second")]


async def test_many_concurrent_jobs_share_few_commits(db):
    await asyncio.gather(
        *(
            db.write(lambda c, n=n: c.execute("INSERT INTO t VALUES (?, 'x')", (n,)))
            for n in range(2000)
        )
    )
    assert len(await db.read(rows)) == 2000
    assert db.batches < 2000 / 4  # grouped, not one commit per job


async def test_a_tick_s_request_writes_commit_on_the_loop_in_one_transaction(db):
    """No thread hop for requests: what one loop tick writes commits at the tick's end, on the
    loop's own thread, as one transaction."""
    import threading

    threads: set[int] = set()

    def insert(n: int):
        def job(c: sqlite3.Connection) -> int:
            threads.add(threading.get_ident())
            return c.execute("INSERT INTO t VALUES (?, 'x')", (n,)).lastrowid

        return job

    db._checkpoint_asked = time.monotonic() + 60  # no checkpoint due: it would hold the file
    batches = db.batches
    results = await asyncio.gather(*(db.write(insert(n)) for n in range(50)))
    assert results == list(range(50))
    assert threads == {threading.get_ident()}
    assert db.batches == batches + 1
    assert db.backlog == 0 and len(await db.read(rows)) == 50


async def test_a_loop_in_another_thread_writes_too(db):
    """Another thread's loop (a CLI, a test) writes on its own thread or through the writer
    thread, never on ours, and each sees the other's rows."""
    import threading

    await db.write(lambda c: c.execute("INSERT INTO t VALUES (1, 'home')"))
    ran_on: list[int] = []

    def other() -> None:
        async def write() -> None:
            def job(c: sqlite3.Connection) -> None:
                ran_on.append(threading.get_ident())
                c.execute("INSERT INTO t VALUES (2, 'away')")

            await db.write(job)

        asyncio.run(write())

    thread = threading.Thread(target=other)
    thread.start()
    await asyncio.to_thread(thread.join)
    assert ran_on and ran_on[0] != threading.get_ident()
    assert await db.read(rows) == [(1, "home"), (2, "away")]


async def test_the_writer_thread_checkpoints_the_wal_of_the_loop_s_commits(db):
    """The loop's commits never checkpoint (that copies pages and syncs): the writer thread
    does, every CHECKPOINT_EVERY seconds of writing."""
    from miri.infra.sqlite import CHECKPOINT_EVERY

    before = db.checkpoints
    for n in range(6):
        await db.write(lambda c, n=n: c.execute("INSERT INTO t VALUES (?, 'x')", (n,)))
        await asyncio.sleep(CHECKPOINT_EVERY / 2)
    for _ in range(100):
        if db.checkpoints >= before + 2:
            break
        await asyncio.sleep(0.02)
    assert db.checkpoints >= before + 2
    assert len(await db.read(rows)) == 6


async def test_closed_database_refuses_work(tmp_path):
    database = Database(tmp_path / "c.sqlite3")
    await database.close()
    with pytest.raises(Exception, match="closed"):
        await database.write(lambda c: None)


async def test_writers_of_one_file_queue_on_the_shared_write_lock(db, tmp_path):
    """Another process's writer holds the lock file: our batch waits for it in the kernel (not
    in SQLite's sleeping busy handler) and commits the moment it is released."""
    import fcntl

    held = open(f"{db.path}.writelock", "a+")  # noqa: SIM115 - held across the awaits below
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        write = asyncio.ensure_future(
            db.write(lambda c: c.execute("INSERT INTO t VALUES (7, 'x')"))
        )
        await asyncio.sleep(0.3)
        assert not write.done()
        assert await db.read(rows) == []
        fcntl.flock(held, fcntl.LOCK_UN)
        await asyncio.wait_for(write, 2.0)
    finally:
        held.close()
    assert await db.read(rows) == [(7, "x")]


async def test_backlog_counts_requests_waiting_not_background_work(db):
    """The bus yields to requests while ``backlog`` is high; its own writes must not count, or
    it throttles itself while draining."""
    import contextvars
    import fcntl

    from miri.infra.sqlite import BACKGROUND

    def insert(k: int):
        return lambda c: c.execute("INSERT INTO t VALUES (?, 'x')", (k,))

    written = db.written
    held = open(f"{db.path}.writelock", "a+")  # noqa: SIM115 - held across the awaits below
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # the writer waits: nothing leaves the queue
        jobs = [asyncio.ensure_future(db.write(insert(k))) for k in range(3)]

        def background() -> list[asyncio.Future]:
            BACKGROUND.set(True)  # tasks made here copy this context
            return [asyncio.ensure_future(db.write(insert(k))) for k in range(100, 150)]

        jobs += contextvars.copy_context().run(background)
        await asyncio.sleep(0.2)
        assert db.backlog == 3
        fcntl.flock(held, fcntl.LOCK_UN)
        await asyncio.wait_for(asyncio.gather(*jobs), 5.0)
    finally:
        held.close()
    # The writer thread clears its batch's count just after answering it: give it that moment.
    for _ in range(100):
        if db.backlog == 0:
            break
        await asyncio.sleep(0.01)
    assert db.backlog == 0
    assert db.written - written == 3  # the requests' writes, what the bus reads a sale's rate from
    assert len(await db.read(rows)) == 53
