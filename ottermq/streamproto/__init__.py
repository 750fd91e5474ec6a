"""RabbitMQ's stream protocol (the binary protocol of its rabbitmq_stream plugin) on the broker's stream
queues: `codec` and `chunk` are pure, `session` is one connection, `server` the listener."""
