"""Where answers go: one SQLAlchemy code path for SQLite (WAL, the default, in the study folder)
and PostgreSQL (`postgresql://...`), so several server processes can share one study.

Every answer is one transaction; a unique (study, participant, step) constraint makes a second
answer to the same screen fail in the database itself, whichever process it reaches."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from ..errors import CoEmoGenError

PARTICIPANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class DuplicateAnswer(CoEmoGenError):
    """This participant already answered this screen."""


def database_url(study_root: str | Path, url: str | None) -> str:
    """`url` as SQLAlchemy reads it (postgresql:// through psycopg 3), default the study's SQLite file."""
    if not url:
        return f"sqlite:///{Path(study_root).resolve() / 'answers.sqlite'}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith(("sqlite:///", "postgresql+")):
        return url
    raise CoEmoGenError(f"--database {url!r}: give sqlite:///PATH or postgresql://USER@HOST/DB")


class Store:
    """The participants and answers of one study in one database."""

    def __init__(self, url: str, study_id: str) -> None:
        try:
            import sqlalchemy as sa
        except ImportError:
            raise CoEmoGenError("`coemogen study` needs SQLAlchemy: pip install 'coemogen[study]'") from None
        self.sa = sa
        self.study_id = study_id
        if url.startswith("sqlite"):
            self.engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
        meta = sa.MetaData()
        self.participants = sa.Table(
            "study_participants",
            meta,
            sa.Column("number", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("study", sa.String(64), nullable=False),
            sa.Column("participant", sa.String(64), nullable=False),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.UniqueConstraint("study", "participant", name="one_row_per_participant"),
        )
        self.answers = sa.Table(
            "study_answers",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("study", sa.String(64), nullable=False),
            sa.Column("participant", sa.String(64), nullable=False),
            sa.Column("step", sa.Integer, nullable=False),
            sa.Column("trial", sa.String(16), nullable=False),
            sa.Column("choice", sa.String(16), nullable=False),
            sa.Column("position", sa.Integer, nullable=False),
            sa.Column("rt_ms", sa.Integer),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.UniqueConstraint("study", "participant", "step", name="one_answer_per_screen"),
        )
        try:
            meta.create_all(self.engine)
        except sa.exc.IntegrityError:
            meta.create_all(self.engine)  # another process created the tables at the same moment
        except sa.exc.OperationalError as err:
            raise CoEmoGenError(f"cannot open the answers database {self.engine.url!r}: {err.orig}") from None

    def register(self, participant: str) -> int:
        """The participant's number (in order of arrival, shared by every study in the database; it
        names their sequence once and for all), registering them on first sight."""
        sa = self.sa
        row = self.number(participant)
        if row is not None:
            return row
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    self.participants.insert().values(
                        study=self.study_id, participant=participant, created=datetime.now(timezone.utc)
                    )
                )
        except sa.exc.IntegrityError:
            pass  # registered by a concurrent request, maybe in another process
        return self.number(participant)

    def number(self, participant: str) -> int | None:
        """The participant's number, None for one never seen."""
        t = self.participants
        with self.engine.connect() as conn:
            return conn.execute(
                self.sa.select(t.c.number).where(t.c.study == self.study_id, t.c.participant == participant)
            ).scalar()

    def answered(self, participant: str) -> int:
        t = self.answers
        with self.engine.connect() as conn:
            return conn.execute(
                self.sa.select(self.sa.func.count()).where(t.c.study == self.study_id, t.c.participant == participant)
            ).scalar()

    def record(self, participant: str, step: int, trial: str, choice: str, position: int, rt_ms: int | None) -> None:
        """Store one answer in its own transaction; a second answer to the same screen is refused."""
        sa = self.sa
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    self.answers.insert().values(
                        study=self.study_id,
                        participant=participant,
                        step=step,
                        trial=trial,
                        choice=choice,
                        position=position,
                        rt_ms=rt_ms,
                        created=datetime.now(timezone.utc),
                    )
                )
        except sa.exc.IntegrityError:
            raise DuplicateAnswer(f"participant {participant} already answered screen {step + 1}") from None

    def all_answers(self) -> list[dict]:
        """Every answer of this study, by participant and screen."""
        t = self.answers
        with self.engine.connect() as conn:
            rows = conn.execute(
                self.sa.select(t).where(t.c.study == self.study_id).order_by(t.c.participant, t.c.step)
            ).mappings()
            return [dict(r) for r in rows]

    def numbers(self) -> dict[str, int]:
        """participant -> their number, which names their sequence."""
        t = self.participants
        with self.engine.connect() as conn:
            rows = conn.execute(self.sa.select(t.c.participant, t.c.number).where(t.c.study == self.study_id))
            return {p: n for p, n in rows}

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, record) -> None:
    # WAL: readers do not block the writer, and a committed answer survives the process being killed.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
