"""KLUE-NLI fine-tuning and serving: the library beneath the project's faces.

The faces sit in the project folder and are loaded by their tools: `stages/` by dvc.yaml,
`flows/` by prefect.yaml's entrypoints, `service/` by bentofile.yaml. They import this
library; it imports none of them, and works installed outside a checkout (the project folder
is the working directory, or a path it is given). Its layers, each importing only the ones
below it (the contract in pyproject.toml, [tool.importlinter], checked by `make lint` and
`make test`):

    cli          `klue-nli`, the command-line tool
    experiments  recipes, overrides, the sweep and its ranking, a run's record, DVC's state
    monitoring   the served champion's answers against its dev profile; the alert webhook
    registry     MLflow tracking and model registry, promotion policy, model cards
    inference    the Predictor (PyTorch, ONNX Runtime, OpenVINO), batching, the BentoML store
    model        encoders, the classifier, Lightning training, metrics, behaviour tests
    network      the classifier's pooling (cls or mean), shared by training and serving
    data         KLUE-NLI files, download, text cleaning, tokenization, the feature cache
    core         params.yaml's schema, errors, atomic writes, checksums, the environment
"""
