"""Suite-wide fixtures: the real Kafka broker (tests/kafka_fixture.py)."""
pytest_plugins = ["tests.kafka_fixture"]
