# Copied unchanged (only this header added) from github.com/rabbitmq-community/rstream,
# docs/examples/basic_consumers/basic_consumer_offset_next.py at v1.0.1-1-gb0b9f8a (commit b0b9f8ad47015a8a107ccb76a683230fd8dd5c14, the newest
# snapshot available here; the installed rstream is 1.1.1). MIT License, Copyright (C) 2021 George
# Fortunatov: see LICENSE in this directory. Run by tests/integration/test_stream_client_examples.py
# through ../run_example.py, which points it at the test broker and lowers its message counts.
import asyncio
import signal

from rstream import (
    AMQPMessage,
    Consumer,
    ConsumerOffsetSpecification,
    MessageContext,
    OffsetType,
    amqp_decoder,
)

STREAM = "my-test-stream"


async def consume():
    consumer = Consumer(
        host="localhost",
        port=5552,
        vhost="/",
        username="guest",
        password="guest",
    )

    loop = asyncio.get_event_loop()
    loop.add_signal_handler(signal.SIGINT, lambda: asyncio.create_task(consumer.close()))

    async def on_message(msg: AMQPMessage, message_context: MessageContext):
        print(
            "Got message: {}".format(msg)
            + " from stream "
            + message_context.stream
            + " offset: "
            + str(message_context.offset)
        )

    await consumer.subscribe(
        stream=STREAM,
        callback=on_message,
        decoder=amqp_decoder,
        offset_specification=ConsumerOffsetSpecification(OffsetType.NEXT),
    )
    await consumer.run()


asyncio.run(consume())
