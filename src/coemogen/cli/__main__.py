"""`python -m coemogen.cli` (and `accelerate launch -m coemogen.cli`)."""

import sys

from . import main

sys.exit(main())
