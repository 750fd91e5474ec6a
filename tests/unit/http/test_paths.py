"""Request-target parsing and route matching, with plain bytes."""

from __future__ import annotations

import pytest

from ottermq.http.paths import BadPath, MethodNotAllowed, NotFound, Router, split_target


def test_segments_are_decoded_after_splitting() -> None:
    assert split_target(b"/api/queues/%2F/my%20q") == (("api", "queues", "/", "my q"), {})
    assert split_target(b"/api/queues/") == (("api", "queues"), {})
    assert split_target(b"/") == ((), {})
    assert split_target(b"/api/x/caf%C3%A9") == (("api", "x", "café"), {})


def test_query_parameters() -> None:
    assert split_target(b"/api/q?if-empty=true&x=a+b&&y=%26")[1] == {"if-empty": "true", "x": "a b", "y": "&"}


@pytest.mark.parametrize("target", [b"/api/%zz", b"/api/%2", b"/api/%FF", b"api/queues", b"/a?x=%G0"])
def test_bad_targets(target: bytes) -> None:
    with pytest.raises(BadPath):
        split_target(target)


def test_router_matches_literals_and_parameters() -> None:
    router: Router[str] = Router()
    router.add("GET", "/api/queues/{vhost}")("list")
    router.add("PUT", "/api/queues/{vhost}/{name}")("put")
    router.add("DELETE", "/api/queues/{vhost}/{name}")("delete")
    router.add("GET", "/")("page")
    assert router.resolve("GET", ("api", "queues", "/")) == ("list", {"vhost": "/"})
    assert router.resolve("DELETE", ("api", "queues", "v", "q")) == ("delete", {"vhost": "v", "name": "q"})
    assert router.resolve("HEAD", ("api", "queues", "v")) == ("list", {"vhost": "v"})
    assert router.resolve("GET", ()) == ("page", {})
    with pytest.raises(MethodNotAllowed) as refused:
        router.resolve("GET", ("api", "queues", "v", "q"))
    assert refused.value.allowed == ["DELETE", "PUT"]
    with pytest.raises(NotFound):
        router.resolve("GET", ("api", "exchanges"))
