"""The built-in learner of models-in-the-loop (`labelops learner`, issue 10 item 3).

It closes the active-learning loop of one campaign: it reads every item and every human
label from the campaign's Kafka topics, retrains a scikit-learn model (TF-IDF + logistic
regression) every K new human labels or T seconds, scores every item that has no human label
yet and publishes the predictions, with a version derived from the training data, to the
campaign's predictions topic. The worker routes and auto-accepts from those predictions.

Pure decision code (consolidation, features, training, versions, the retrain schedule, the
in-memory state) lives apart from Kafka and HTTP I/O (kafka_io.py, http_service.py, main.py).
"""
