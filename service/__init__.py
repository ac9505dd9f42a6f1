"""The BentoML service (`make serve`): the champion behind `/`, `POST /api` and `POST /predict`."""
