"""Helpers of the tweetpulse DAGs: the ModelRunner client, the tweet sources, alerting and the logic of
each task. DAG files stay thin and call these; nothing here imports torch or the ModelRunner package:
Airflow talks to the ModelRunner over HTTP only.
"""
