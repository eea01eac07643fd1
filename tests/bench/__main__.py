"""``python -m tests.bench``: the end-to-end pipeline benchmark (see tests/bench/pipeline_bench.py).

The codec micro-benchmark stays separate: ``python -m tests.bench.codec_bench``.
"""

import sys

from tests.bench.pipeline_bench import main

sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows under make and pipes
raise SystemExit(main())
