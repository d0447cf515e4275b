"""Create the worker's internal topics before it joins its consumer group.

Faust creates them itself, but its partition assignor can run before a brand-new topic
appears in the cluster metadata; it then logs "Ignoring missing topic" and the detect agent
never gets a partition (seen in about 1 start in 3 on a fresh cluster). Creating them
first, and waiting until the metadata lists them, removes that race.
"""
from __future__ import annotations

import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError


def ensure_topics(bootstrap: str, topics: dict[str, tuple[int, dict[str, str]]], timeout: float = 30.0) -> None:
    """Create each ``name -> (partitions, configs)`` if missing, then wait for the metadata."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="ddetect-topics")
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(name, num_partitions=p, replication_factor=1, topic_configs=cfg)
               for name, (p, cfg) in topics.items() if name not in existing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another worker won the race
        deadline = time.monotonic() + timeout
        while True:
            described = {t["name"]: t for t in admin.describe_topics(list(topics)) if not t.get("error_code")}
            ready = all(len(described.get(n, {}).get("partitions") or []) == p and
                        all(part.get("leader_id", -1) >= 0 for part in described[n]["partitions"])
                        for n, (p, _) in topics.items())
            if ready:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not ready after {timeout}s: {sorted(topics)}")
            time.sleep(0.2)
    finally:
        admin.close()
