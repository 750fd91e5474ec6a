# Copied unchanged (only this header added) from github.com/rabbitmq-community/rstream,
# docs/examples/super_stream/super_stream_producer.py at v1.0.1-1-gb0b9f8a (commit b0b9f8ad47015a8a107ccb76a683230fd8dd5c14, the newest
# snapshot available here; the installed rstream is 1.1.1). MIT License, Copyright (C) 2021 George
# Fortunatov: see LICENSE in this directory. Run by tests/integration/test_stream_client_examples.py
# through ../run_example.py, which points it at the test broker and lowers its message counts.
import asyncio
import time

from rstream import (
    AMQPMessage,
    RouteType,
    SuperStreamCreationOption,
    SuperStreamProducer,
)

SUPER_STREAM = "invoices"
MESSAGES = 1000000


# this value will be hashed using mumh3 hashing algorithm to decide the partition resolution for the message
async def routing_extractor(message: AMQPMessage) -> str:
    return message.application_properties["id"]


async def publish():
    # Struct used to pass information to the SuperStreamProducer
    # in order to create a superstream
    super_stream_creation_opt = SuperStreamCreationOption(n_partitions=3)
    # SuperStreamProducer wraps a Producer
    async with SuperStreamProducer(
        host="localhost",
        username="guest",
        password="guest",
        routing_extractor=routing_extractor,
        super_stream=SUPER_STREAM,
        super_stream_creation_option=super_stream_creation_opt,
        routing=RouteType.Hash,
    ) as super_stream_producer:
        # Sending a million messages

        start_time = time.perf_counter()
        for i in range(MESSAGES):
            amqp_message = AMQPMessage(
                body=bytes("hello: {}".format(i), "utf-8"),
                application_properties={"id": "{}".format(i)},
            )
            await super_stream_producer.send(amqp_message)
            if i % 100000 == 0:
                print(f"Published {i} messages to super stream: {SUPER_STREAM}")

        end_time = time.perf_counter()
        print(
            f"Sent {MESSAGES} messages in {end_time - start_time:0.4f} seconds to super stream: {SUPER_STREAM}"
        )


asyncio.run(publish())
