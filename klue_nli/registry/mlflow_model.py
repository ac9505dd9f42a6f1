"""MLflow pyfunc wrapper around the Predictor, logged as code (no pickled Python objects).

`mlflow.pyfunc.log_model(python_model=<this file>, artifacts={"model_dir": ...})` stores the
saved model folder as an artifact; loading it builds a Predictor from that folder.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from klue_nli.inference.predictor import Predictor


class NLIPyfuncModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        self.predictor = Predictor.from_dir(context.artifacts["model_dir"])

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        probs = self.predictor.predict_proba(
            model_input["premise"].tolist(), model_input["hypothesis"].tolist()
        )
        out = pd.DataFrame(probs, columns=list(self.predictor.labels))
        out.insert(0, "label", [self.predictor.labels[i] for i in probs.argmax(axis=1)])
        return out


mlflow.models.set_model(NLIPyfuncModel())
