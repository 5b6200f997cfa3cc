"""Conformance class 4: OData $batch (multipart/mixed with atomic changesets; JSON batch)."""

from __future__ import annotations

import json

from tests.sensors.conftest import STA, create, thing_body


def _multipart(parts: list[str], boundary: str = "batch_1") -> bytes:
    return ("".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n").encode()


def _http(method: str, url: str, body: dict | None = None, cid: str | None = None) -> str:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if cid:
        head += f"Content-ID: {cid}\r\n"
    req = f"{method} {url} HTTP/1.1\r\nHost: localhost\r\n"
    if body is not None:
        req += "Content-Type: application/json\r\n\r\n" + json.dumps(body)
    else:
        req += "\r\n"
    return head + "\r\n" + req


def _changeset(parts: list[str], boundary: str = "changeset_1") -> str:
    inner = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--"
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{inner}"


def test_batch_get_and_changeset(client, op, viewer):
    tid = create(client, op, "Things", thing_body())
    sensor = {"name": "s", "description": "d", "encodingType": "text/html", "metadata": "m"}
    body = _multipart([
        _http("GET", f"Things({tid})?$select=name"),
        _changeset([_http("POST", "Sensors", sensor, "1"), _http("PATCH", "$1", {"name": "patched"}, "2")]),
        _http("GET", "/sta/v1.1/Sensors?$count=true"),
    ])
    r = client.post(f"{STA}/$batch", content=body, headers={**op, "Content-Type": "multipart/mixed; boundary=batch_1"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("multipart/mixed")
    text = r.text
    assert '{"name": "camera 1"}' in text  # $select honoured
    assert "HTTP/1.1 200 OK" in text and "HTTP/1.1 201 Created" in text
    assert '"name": "patched"' in text
    assert client.get(f"{STA}/Sensors?$filter=name eq 'patched'", headers=viewer).json()["value"]


def test_failed_changeset_is_rolled_back(client, op, viewer):
    good = {"name": "s", "description": "d", "encodingType": "text/html", "metadata": "m"}
    body = _multipart([_changeset([_http("POST", "Sensors", good, "1"), _http("POST", "Sensors", {"name": "no description"}, "2")])])
    r = client.post(f"{STA}/$batch", content=body, headers={**op, "Content-Type": "multipart/mixed; boundary=batch_1"})
    assert r.status_code == 200 and "HTTP/1.1 400" in r.text and "description" in r.text
    assert client.get(f"{STA}/Sensors", headers=viewer).json()["value"] == []


def test_json_batch(client, op):
    r = client.post(f"{STA}/$batch", json={"requests": [
        {"id": "a", "method": "post", "url": "Things", "body": thing_body()},
        {"id": "b", "method": "get", "url": "$a/Datastreams?$select=name"},
    ]}, headers=op)
    res = r.json()["responses"]
    assert res[0]["status"] == 201 and res[1]["status"] == 200
    assert res[1]["body"]["value"][0] == {"name": "camera 1 stream 0"}


def test_batch_needs_credentials_and_role(client, viewer):
    body = _multipart([_changeset([_http("POST", "Sensors", {"name": "s", "description": "d", "encodingType": "t", "metadata": "m"}, "1")])])
    assert client.post(f"{STA}/$batch", content=body, headers={"Content-Type": "multipart/mixed; boundary=batch_1"}).status_code == 401
    r = client.post(f"{STA}/$batch", content=body, headers={**viewer, "Content-Type": "multipart/mixed; boundary=batch_1"})
    assert "HTTP/1.1 403" in r.text
