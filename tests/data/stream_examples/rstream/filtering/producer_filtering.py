# Copied unchanged (only this header added) from github.com/rabbitmq-community/rstream,
# docs/examples/filtering/producer_filtering.py at v1.0.1-1-gb0b9f8a (commit b0b9f8ad47015a8a107ccb76a683230fd8dd5c14, the newest
# snapshot available here; the installed rstream is 1.1.1). MIT License, Copyright (C) 2021 George
# Fortunatov: see LICENSE in this directory. Run by tests/integration/test_stream_client_examples.py
# through ../run_example.py, which points it at the test broker and lowers its message counts.
import asyncio
import time

from rstream import AMQPMessage, Producer

STREAM = "my-test-stream"
MESSAGES = 200


async def filter_value_extractor(message: AMQPMessage) -> str:
    return message.application_properties["region"]


async def publish():
    async with Producer(
        "localhost", username="guest", password="guest", filter_value_extractor=filter_value_extractor
    ) as producer:
        # create a stream if it doesn't already exist
        await producer.create_stream(STREAM, exists_ok=True)

        start_time = time.perf_counter()

        # sending 200 messages with filtering New York
        for i in range(MESSAGES):
            application_properties = {
                "region": "New York",
            }
            amqp_message = AMQPMessage(
                body=bytes("hello: {}".format(i), "utf-8"),
                application_properties=application_properties,
            )
            # send is asynchronous
            await producer.send(stream=STREAM, message=amqp_message)

        # wait a bit to ensure all messages will go to a chunk
        # don't do this in production. This is only for testing purposes
        # it is to force the bloom filter to be created
        await asyncio.sleep(2)

        # sending 200 messages with filtering California
        for i in range(MESSAGES):
            application_properties = {
                "region": "California",
            }
            amqp_message = AMQPMessage(
                body=bytes("hello: {}".format(i), "utf-8"),
                application_properties=application_properties,
            )
            # send is asynchronous
            await producer.send(stream=STREAM, message=amqp_message)

        end_time = time.perf_counter()
        print(f"Sent {MESSAGES} messages in {end_time - start_time:0.4f} seconds")


asyncio.run(publish())
