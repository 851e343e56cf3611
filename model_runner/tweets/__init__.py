"""What the Airflow pipeline needs from the database: inspected tweets and their predictions, the review
queue and labelled feedback, daily inspection statistics, drift, extractive summaries and the alert
ledger. Plain functions over ``model_runner.db.Database``; the HTTP layer is
``model_runner/service/routes/tweets.py`` and the CLI ``model-runner label``.
"""
