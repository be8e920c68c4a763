"""``python -m fluxway_bench`` is ``fluxway bench``."""

from fluxway_bench.cli import main

raise SystemExit(main())
