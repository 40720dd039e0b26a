"""Whatever a client sends, the HTTP API answers a well-formed JSON document and never a 500:
random paths, query strings, headers and bodies (including lone surrogates, integers beyond
64 bits and raw bytes) against one seeded store."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from arcoflow.kernel import Kernel, LmdbStore
from hypothesis import given
from hypothesis import strategies as st

try:  # tests/plugins may become a package
    from .http_support import Client, seed, served
except ImportError:
    from http_support import Client, seed, served

WORDS = [
    "schedules",
    "hourly",
    "ticks",
    "hourly:1970-01-01T01:00:00Z",
    "sensors",
    "orders",
    "files",
    "paused",
    "evaluations",
    "messages",
    "runs",
    "conflicts",
    "healthz",
    "openapi.json",
    "",
]
# Text that may hold lone surrogates, which only JSON escapes can carry.
nasty = st.text(st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr)), max_size=20)


def _quote(text: str) -> str:
    # surrogatepass: a lone surrogate becomes bytes that are not UTF-8, as a hostile client
    # could send them.
    return quote(text, safe=":", errors="surrogatepass")


segment = st.one_of(st.sampled_from(WORDS), nasty).map(_quote)
path = st.lists(segment, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
query = st.dictionaries(
    st.sampled_from(["limit", "cursor", "status", "before", "x"]),
    st.one_of(
        st.integers(-5, 2000).map(str),
        st.sampled_from(["TRIGGERED", "REQUESTED", "YzF8cnVuc3x8eA"]),
        nasty,
    ),
    max_size=3,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | nasty,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty, inner, max_size=4),
    max_leaves=12,
)
# Header values travel as latin-1; control characters would break the request itself.
latin1 = st.characters(max_codepoint=255, exclude_categories=["Cc"])
envelope = st.fixed_dictionaries(
    {}, optional={"message_id": st.one_of(nasty, st.integers()), "payload": json_values}
)


def _body(value: Any) -> bytes:
    # allow_nan: infinities reach the server as 1e999-style literals it must refuse.
    return json.dumps(value).replace("Infinity", "1e999").encode()


def test_random_requests_never_break_the_server(store_dir: str) -> None:
    store = LmdbStore(store_dir)
    kernel = Kernel(store)
    seed(kernel)
    try:
        with served(kernel) as server:
            client = Client(server)  # checks shape and schema of every answer

            @given(path=path, query=query)
            def gets(path: str, query: dict[str, str]) -> None:
                pairs = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in query.items())
                target = path + ("?" + pairs if pairs else "")
                reply = client.get(target)
                assert reply.status < 500, (target, reply.text)

            @given(
                sensor=st.sampled_from(["orders", "files", "paused", "nope", "Bad"]),
                body=st.one_of(json_values.map(_body), envelope.map(_body), st.binary()),
                key=st.one_of(st.none(), st.text(latin1, max_size=30)),
            )
            def posts(sensor: str, body: bytes, key: str | None) -> None:
                headers = {"Content-Type": "application/json"}
                if key is not None:
                    headers["X-Message-Id"] = key
                reply = client.request("POST", f"/sensors/{sensor}/messages", body, headers)
                assert reply.status < 500, (sensor, body, reply.text)

            gets()
            posts()
        assert kernel.verify().ok
    finally:
        store.close()
