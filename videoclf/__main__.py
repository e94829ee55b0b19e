"""``python -m videoclf`` (used by the MLproject so it runs without installation)."""

import sys

from videoclf.cli import main

sys.exit(main())
