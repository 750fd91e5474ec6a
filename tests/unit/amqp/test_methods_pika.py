"""Every method against pika.spec, both directions, as payloads and as whole frames."""

import dataclasses
import inspect
from typing import Any

import pika.frame
import pika.spec
import pytest

from ottermq.amqp.frames import FrameReader, MethodFrame, encode_method_frame
from ottermq.amqp.methods import METHODS, METHODS_BY_NAME
from tests.unit.amqp.samples import all_specs, ours, pika_class, sample_kwargs

SPECS = all_specs()
NAMES = [name for name, _ in SPECS]
CONTENT = {"basic.publish", "basic.return", "basic.deliver", "basic.get-ok"}


def _pika_blank(name: str) -> Any:
    """A pika method instance to decode into (pika's update-secret has required arguments)."""
    pcls = pika_class(name)
    params = list(inspect.signature(pcls.__init__).parameters.values())[1:]
    blank = pcls(**{p.name: None for p in params if p.default is inspect.Parameter.empty})
    if name == "connection.update-secret":
        # pika decodes new-secret into an attribute named "mechanisms": read it back from there.
        decode = blank.decode

        def fixed(encoded: bytes, offset: int = 0) -> Any:
            decode(encoded, offset)
            blank.new_secret = blank.mechanisms
            return blank

        blank.decode = fixed
    return blank


def _pika_payload(pika_method: Any) -> bytes:
    return b"".join(pika_method.encode())


def _check_fields(decoded: Any, kwargs: dict[str, Any]) -> None:
    for name, expected in kwargs.items():
        got = getattr(decoded, name)
        assert got == expected, f"{name}: {got!r} != {expected!r}"


def test_every_pika_method_exists() -> None:
    pika_indexes: set[int] = set()
    for cls_name in ("Connection", "Channel", "Access", "Exchange", "Queue", "Basic", "Confirm", "Tx"):
        for obj in vars(getattr(pika.spec, cls_name)).values():
            index: Any = getattr(obj, "INDEX", None)
            if inspect.isclass(obj) and index:
                pika_indexes.add(index)
    assert pika_indexes == set(METHODS)
    assert len(NAMES) == len(METHODS)


@pytest.mark.parametrize("name", NAMES)
def test_metadata_and_defaults_match_pika(name: str) -> None:
    cls = ours(name)
    pcls = pika_class(name)
    assert cls.INDEX == pcls.INDEX == (cls.CLASS_ID << 16) | cls.METHOD_ID
    assert name == cls.NAME
    assert (name in CONTENT) == cls.HAS_CONTENT
    params = list(inspect.signature(pcls.__init__).parameters.values())[1:]
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    assert [f.name for f in fields] == [p.name for p in params]
    default = cls()
    pdefault = pcls(**{p.name: "" for p in params if p.default is inspect.Parameter.empty})
    assert pdefault.synchronous == cls.SYNCHRONOUS
    for p in params:
        if p.default is inspect.Parameter.empty or p.default is None:
            continue  # pika has no usable default: ours is the type's zero value
        expected = p.default.value if hasattr(p.default, "value") else p.default
        if isinstance(getattr(default, p.name), bytes):
            expected = expected.encode()  # long strings are binary here, str in pika's signature
        assert getattr(default, p.name) == expected, p.name


@pytest.mark.parametrize("flip", [0, 1])
@pytest.mark.parametrize(("name", "fields"), SPECS, ids=NAMES)
def test_pika_encodes_we_decode(name: str, fields: list[tuple[str, str, str]], flip: int) -> None:
    kwargs = sample_kwargs(fields, flip)
    payload = _pika_payload(pika_class(name)(**kwargs))
    decoded = ours(name).decode(payload)
    _check_fields(decoded, kwargs)
    assert decoded == ours(name)(**kwargs)
    # A memoryview works as well as bytes.
    assert ours(name).decode(memoryview(payload)) == decoded


@pytest.mark.parametrize("flip", [0, 1])
@pytest.mark.parametrize(("name", "fields"), SPECS, ids=NAMES)
def test_we_encode_pika_decodes(name: str, fields: list[tuple[str, str, str]], flip: int) -> None:
    kwargs = sample_kwargs(fields, flip)
    ours_payload = ours(name)(**kwargs).encode()
    assert ours_payload == _pika_payload(pika_class(name)(**kwargs))
    decoded = _pika_blank(name).decode(ours_payload)
    _check_fields(decoded, kwargs)


@pytest.mark.parametrize(("name", "fields"), SPECS, ids=NAMES)
def test_whole_frames_both_ways(name: str, fields: list[tuple[str, str, str]]) -> None:
    kwargs = sample_kwargs(fields)
    wire = pika.frame.Method(513, pika_class(name)(**kwargs)).marshal()
    reader = FrameReader(expect_protocol_header=False)
    reader.feed(wire)
    frame = reader.next_frame()
    assert frame == MethodFrame(513, ours(name)(**kwargs))
    assert reader.next_frame() is None

    ours_wire = encode_method_frame(513, ours(name)(**kwargs))
    assert ours_wire == wire
    if name == "connection.update-secret":
        # pika's frame decoder cannot build this method without arguments: decode it by hand.
        assert ours_wire[:3] == b"\x01\x02\x01" and ours_wire[-1] == 0xCE
        _check_fields(_pika_blank(name).decode(ours_wire[11:-1]), kwargs)
        return
    consumed, pframe = pika.frame.decode_frame(ours_wire)
    assert consumed == len(ours_wire)
    assert isinstance(pframe, pika.frame.Method)
    assert pframe.channel_number == 513
    _check_fields(pframe.method, kwargs)


def test_default_instances_round_trip() -> None:
    for cls in METHODS.values():
        assert cls.decode(cls().encode()) == cls()
    assert METHODS_BY_NAME["exchange.unbind-ok"].METHOD_ID == 51
