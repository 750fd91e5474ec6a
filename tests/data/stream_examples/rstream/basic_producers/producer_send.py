# Copied unchanged (only this header added) from github.com/rabbitmq-community/rstream,
# docs/examples/basic_producers/producer_send.py at v1.0.1-1-gb0b9f8a (commit b0b9f8ad47015a8a107ccb76a683230fd8dd5c14, the newest
# snapshot available here; the installed rstream is 1.1.1). MIT License, Copyright (C) 2021 George
# Fortunatov: see LICENSE in this directory. Run by tests/integration/test_stream_client_examples.py
# through ../run_example.py, which points it at the test broker and lowers its message counts.
import asyncio
import time

from rstream import AMQPMessage, Producer

STREAM = "my-test-stream"
MESSAGES = 1_000_000


async def publish():
    async with Producer("localhost", username="guest", password="guest") as producer:
        # create a stream if it doesn't already exist
        await producer.create_stream(STREAM, exists_ok=True)

        # sending a million of messages in AMQP format
        start_time = time.perf_counter()

        for i in range(MESSAGES):
            amqp_message = AMQPMessage(
                body=bytes("hello: {}".format(i), "utf-8"),
            )
            # send is asynchronous
            await producer.send(stream=STREAM, message=amqp_message)

        end_time = time.perf_counter()
        print(f"Sent {MESSAGES} messages in {end_time - start_time:0.4f} seconds")


asyncio.run(publish())
