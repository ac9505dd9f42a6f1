"""Network: the classifier as training and serving both run it (the Hugging Face sequence
classifier and the pooling its head reads). Imports no other layer; used by model and
inference, and carried by the Bento and the logged MLflow model."""
