"""The `coemogen` command line: world build, caption, filter, train, generate, evaluate, demo, ...

`parser.py` defines the commands and their flags, `commands.py` what each one does.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import CoEmoGenError
from ..io import WRITE_ERRNOS, write_failure
from .parser import build_parser

RESUME_HINT = "re-run the same command to resume (`coemogen train`: with --resume_from_checkpoint latest)"


class Stopped(BaseException):
    """SIGTERM arrived: a user, a scheduler, or `accelerate launch` stopping the other processes after
    one failed. Raised in the main thread so temporary files are removed on the way out."""


@contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Stopped()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _peer_failure(err: BaseException) -> bool:
    """A collective failed because another process of a multi-process run died."""
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return False
    # gloo reports a vanished peer, or one silent past --ddp_timeout, as a plain RuntimeError from its
    # transport, not a DistError
    gloo_peer_gone = isinstance(err, RuntimeError) and any(
        text in str(err) for text in ("Connection closed by peer", "Connection reset by peer", "Timed out waiting")
    )
    return isinstance(err, getattr(dist, "DistError", ())) or gloo_peer_gone


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars; our own progress bars stay
    process = ""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        process = f"process {os.environ.get('RANK', '?')} of {os.environ['WORLD_SIZE']}: "
    try:
        with _sigterm_as_exception():
            args.func(args)
    except CoEmoGenError as err:
        print(f"coemogen: error: {process}{err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in WRITE_ERRNOS:
            raise
        # A write outside the package's own helpers (a folder made, a library's file): still no traceback.
        print(f"coemogen: error: {process}{write_failure(err.filename or 'an output file', err)}", file=sys.stderr)
        return 2
    except Stopped:
        cause = " (another process of this run failed?)" if process else ""
        print(f"coemogen: {process}stopped by SIGTERM{cause}; {RESUME_HINT}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as err:
        if not _peer_failure(err):
            raise
        print(
            f"coemogen: error: {process}another process of this run stopped or hung past --ddp_timeout "
            f"({str(err).splitlines()[0]}); "
            f"{RESUME_HINT}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
