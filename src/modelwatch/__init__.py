"""modelwatch: serverless monitoring for scikit-learn models on AWS.

The modules at this level are the Lambda runtime (they ship in the function
artifacts); ``modelwatch.cli`` and ``modelwatch.local`` are developer tooling that
never ships to Lambda.
"""

import os

__version__ = "0.1.0"

# OpenMP threads that wait by sleeping, not spinning. scikit-learn's tree models predict
# with one OpenMP parallel region per tree (100 per chunk of rows for the sample model);
# when the process gets less CPU than it has cores (Lambda's share at FunctionMemorySizeMB,
# or a busy host), a thread spinning at each region's end takes the CPU its partner needs:
# predicting 100,000 rows took 1.4 s and 1.4 CPU-seconds spinning, 0.45 s passive, the
# same as one thread (scripts/bench_chunked.py). libgomp reads this once, when scikit-learn
# loads it, so it is set before any module here imports scikit-learn; a value from the
# environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
