"""Model: the encoders (Hub or the offline e5 conversion), the sequence classifier, Lightning
training (module, data module, callbacks), DVCLive logging, metrics and behaviour tests.
Uses network, data and core; never inference or serving (training does not load a predictor)."""
