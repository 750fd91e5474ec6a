"""Protocol errors that carry their AMQP reply code.

Strategy: every failure the protocol knows how to report is an ``AMQPError``; one place in the
broker turns it into channel.close (``ChannelError``, soft) or connection.close
(``AMQPConnectionError``, hard). The codec itself raises only connection errors: a peer that
sends undecodable bytes cannot be trusted with the rest of its stream.
"""


class AMQPError(Exception):
    """An error with an AMQP reply code and a RabbitMQ-style reply text.

    ``class_id``/``method_id`` name the method that caused it (0 when none), as
    channel.close and connection.close report them. ``channel`` is the channel whose frame caused it when
    the raiser knows it (the protocol machine does; 0 otherwise: the handler's caller knows the channel).
    """

    def __init__(
        self, reply_code: int, reply_text: str, class_id: int = 0, method_id: int = 0, *, channel: int = 0
    ) -> None:
        super().__init__(reply_code, reply_text)
        self.reply_code = reply_code
        self.reply_text = reply_text
        self.class_id = class_id
        self.method_id = method_id
        self.channel = channel

    def __str__(self) -> str:
        return f"{self.reply_code} {self.reply_text}"


class ChannelError(AMQPError):
    """A soft error: the channel is closed, the connection lives on."""


class AMQPConnectionError(AMQPError):
    """A hard error: the whole connection is closed."""


class BadProtocolHeader(AMQPConnectionError):
    """The peer did not open with ``AMQP 0 0 9 1``.

    The server answers with its own protocol header and closes the socket (no connection.close:
    the peer does not speak this protocol).
    """

    def __init__(self, received: bytes) -> None:
        super().__init__(501, f"FRAME_ERROR - bad protocol header {received!r}")
        self.received = received
