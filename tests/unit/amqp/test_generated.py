"""The committed generated module is what the generator produces, and it encodes as the spec says."""

from pathlib import Path

import pytest

import ottermq.amqp._generated as generated
from ottermq.amqp.methods import ExchangeDeclare, QueueDeclare
from tools.gen_amqp_methods import generate


def test_generated_module_is_up_to_date() -> None:
    assert Path(generated.__file__).read_text() == generate(), "rerun tools/gen_amqp_methods.py"


def test_bits_share_an_octet() -> None:
    payload = ExchangeDeclare(exchange="x", passive=True, internal=True, nowait=True).encode()
    # ticket, "x", "direct", then one octet for five bits: passive=1, internal=8, nowait=16.
    assert payload == b"\x00\x00\x01x\x06direct\x19\x00\x00\x00\x00"


def test_short_string_limit() -> None:
    assert QueueDeclare.decode(QueueDeclare(queue="q" * 255).encode()).queue == "q" * 255
    with pytest.raises(ValueError):
        QueueDeclare(queue="q" * 256).encode()
    with pytest.raises(ValueError):
        QueueDeclare(queue="é" * 128).encode()  # 256 octets of UTF-8
