"""Pure detection core: canonical events, window counts, statistical tests, rules, alerts.

Nothing in this package imports Kafka, Faust or Prometheus: the streaming pipeline and
the offline replay drive the same code, so they produce the same alerts.
"""
