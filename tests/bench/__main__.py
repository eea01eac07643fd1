"""``python -m tests.bench``: the end-to-end pipeline benchmark (see tests/bench/pipeline_bench.py).

The codec micro-benchmark stays separate: ``python -m tests.bench.codec_bench``.
"""

from tests.bench.pipeline_bench import main

raise SystemExit(main())
