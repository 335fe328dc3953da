"""Building the model directory (the model layer's content) from a labelled CSV.

``build_model`` trains a default pipeline (modeling.training); ``package_model`` wraps
an estimator the user already fitted (modeling.packaging). Both end in
``write_model_directory`` (modeling.directory): model.skops, metadata.json and
baseline.json as modelwatch.model_bundle describes them. Reading the CSV and choosing
the features is modeling.dataset.

Developer tooling, like modelwatch.cli and modelwatch.local: the Lambda artifact
leaves this package out (functions/function.mk), and no runtime module imports it.
"""

from modelwatch.modeling.dataset import ColumnOptions
from modelwatch.modeling.directory import BundleSummary, write_model_directory
from modelwatch.modeling.packaging import package_model
from modelwatch.modeling.training import build_model

__all__ = ["BundleSummary", "ColumnOptions", "build_model", "package_model", "write_model_directory"]
