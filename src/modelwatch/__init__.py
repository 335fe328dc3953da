"""modelwatch: serverless monitoring for scikit-learn models on AWS.

The modules at this level are the Lambda runtime (they ship in the function
artifacts); ``modelwatch.cli`` and ``modelwatch.local`` are developer tooling that
never ships to Lambda.
"""

__version__ = "0.1.0"
