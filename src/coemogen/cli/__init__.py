"""The `coemogen` command line: world build, caption, filter, train, generate, evaluate, demo, ...

`parser.py` defines the commands and their flags, `commands.py` what each one does.
"""

from __future__ import annotations

import logging
import sys

from ..errors import CoEmoGenError
from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars; our own progress bars stay
    try:
        args.func(args)
    except CoEmoGenError as err:
        print(f"coemogen: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
