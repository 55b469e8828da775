"""MLflow "models from code" entry point: the logged model is this file, not a pickle.

MLflow executes this file when it loads the model; it only names the model class.
"""

from mlflow.models import set_model

from milkprice.registry.tracking import MilkForecasterModel

set_model(MilkForecasterModel())
