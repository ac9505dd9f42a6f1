"""KLUE-NLI fine-tuning and serving, in layers; each imports only the layers below it
(the contract in pyproject.toml, [tool.importlinter], checked by `make lint` and `make test`):

    registry   MLflow tracking and model registry, promotion policy, model cards
    inference  the Predictor (PyTorch or ONNX Runtime), request batching, the BentoML store
    model      encoders, the classifier, Lightning training, metrics, behaviour tests
    network    the classifier as training and serving run it: its pooling (cls or mean)
    data       KLUE-NLI files, download, text cleaning, tokenization, the feature cache
    core       params.yaml's schema, errors, atomic writes, checksums, the stage runner

The entry points sit on top of those layers:

    cli        `klue-nli`, the command-line tool
    pipeline   recipes, sweeps, records, the Prefect flows and deployments
    stages     the DVC stages (download, featurize, train, evaluate)
    service    the BentoML service: contract, batching, feedback, metrics, the page
"""
