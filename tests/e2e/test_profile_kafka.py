"""The Kafka publisher against a real broker, where one is reachable.

No Kafka broker runs on the development and CI machines (DESIGN.md lists
PostgreSQL and NATS only), so this runs only when SINGLEID_TEST_KAFKA_BOOTSTRAP
names one and confluent-kafka is installed (`pip install 'singleid[kafka]'`).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import pytest

from singleid.profile.service.relay import KafkaPublisher, Outgoing

BOOTSTRAP = os.environ.get("SINGLEID_TEST_KAFKA_BOOTSTRAP", "")


def test_kafka_publisher_keys_by_customer_and_delivers_every_event() -> None:
    if not BOOTSTRAP:
        pytest.skip("SINGLEID_TEST_KAFKA_BOOTSTRAP is not set: no Kafka broker to test against")
    kafka: Any = pytest.importorskip("confluent_kafka")
    topic = f"singleid-test-{uuid.uuid4().hex[:8]}"
    batch = [Outgoing(i, str(uuid.uuid4()), "singleid.profile.updated.v1", f"customer{i % 2}",
                      b'{"specversion":"1.0"}') for i in range(10)]
    publisher = KafkaPublisher(BOOTSTRAP, topic)
    asyncio.run(publisher.publish(batch))
    asyncio.run(publisher.close())
    consumer = kafka.Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": topic,
                               "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen: dict[str, bytes] = {}
    deadline = time.monotonic() + 30
    while len(seen) < len(batch) and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        headers = dict(message.headers())
        seen[headers["ce_id"].decode()] = message.key()
    consumer.close()
    assert {e.event_id: e.subject.encode() for e in batch} == seen
