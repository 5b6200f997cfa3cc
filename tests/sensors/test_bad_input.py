"""Bad input: a clear 4xx naming the field, and nothing stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.sensors.conftest import STA, create, thing_body

OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"


@pytest.fixture
def streams(client, op, viewer):
    body = thing_body(n_streams=3)
    body["Datastreams"][1]["observationType"] = OM + "OM_TruthObservation"
    body["Datastreams"][2]["observationType"] = OM + "OM_CountObservation"
    tid = create(client, op, "Things", body)
    return [d["@iot.id"] for d in client.get(f"{STA}/Things({tid})/Datastreams", headers=viewer).json()["value"]]


def _nothing_stored(client, viewer):
    assert client.get(f"{STA}/Observations", headers=viewer).json()["value"] == []


@pytest.mark.parametrize(("obs", "field"), [
    ({"result": "twelve"}, "result"),
    ({"result": True}, "result"),
    ({"phenomenonTime": "2024-01-01T00:00:00Z"}, "result"),
    ({"result": 1, "phenomenonTime": "yesterday"}, "phenomenonTime"),
    ({"result": 1, "phenomenonTime": "FUTURE"}, "phenomenonTime"),
    ({"result": 1, "resultTime": "FUTURE"}, "resultTime"),
    ({"result": 1, "colour": "red"}, "colour"),
    ({"result": 1, "parameters": [1]}, "parameters"),
    ({"result": 1, "phenomenonTime": "2024-01-02T00:00:00Z/2024-01-01T00:00:00Z"}, "phenomenonTime"),
])
def test_bad_observation_is_400_naming_field(client, op, viewer, streams, obs, field):
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    obs = {k: (future if v == "FUTURE" else v) for k, v in obs.items()}
    r = client.post(f"{STA}/Observations", json={**obs, "Datastream": {"@iot.id": streams[0]}}, headers=op)
    assert r.status_code == 400, r.text
    assert field in r.json()["message"]
    _nothing_stored(client, viewer)


def test_result_type_per_observation_type(client, op, viewer, streams):
    _, truth, count = streams
    assert client.post(f"{STA}/Observations", json={"result": 1, "Datastream": {"@iot.id": truth}}, headers=op).status_code == 400
    assert client.post(f"{STA}/Observations", json={"result": 1.5, "Datastream": {"@iot.id": count}}, headers=op).status_code == 400
    _nothing_stored(client, viewer)
    assert client.post(f"{STA}/Observations", json={"result": False, "Datastream": {"@iot.id": truth}}, headers=op).status_code == 201
    assert client.post(f"{STA}/Observations", json={"result": 3, "Datastream": {"@iot.id": count}}, headers=op).status_code == 201


def test_malformed_json_and_missing_fields(client, op, viewer, streams):
    r = client.post(f"{STA}/Observations", content=b'{"result": 1,', headers={**op, "Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["message"]
    r = client.post(f"{STA}/Observations", json={"result": 1}, headers=op)
    assert r.status_code == 400 and "Datastream" in r.json()["message"]
    r = client.post(f"{STA}/Observations", json={"result": 1, "Datastream": {"@iot.id": 999}}, headers=op)
    assert r.status_code in (400, 404) and "999" in r.json()["message"]
    r = client.post(f"{STA}/Things", json={"description": "no name"}, headers=op)
    assert r.status_code == 400 and "name" in r.json()["message"]
    body = thing_body()
    del body["Datastreams"][0]["Sensor"]
    r = client.post(f"{STA}/Things", json=body, headers=op)
    assert r.status_code == 400 and "Sensor" in r.json()["message"]
    assert len(client.get(f"{STA}/Things", headers=viewer).json()["value"]) == 1  # the fixture's only
    r = client.post(f"{STA}/Locations", json={"name": "x", "description": "d", "encodingType": "application/geo+json",
                                              "location": {"type": "Point", "coordinates": "nope"}}, headers=op)
    assert r.status_code == 400 and "location" in r.json()["message"]
    _nothing_stored(client, viewer)


def test_large_body_is_413_also_when_chunked(client, op, viewer, streams):
    big = b'{"result": 1, "parameters": {"x": "' + b"a" * (50 * 1024 * 1024) + b'"}}'
    r = client.post(f"{STA}/Observations", content=big, headers={**op, "Content-Type": "application/json"})
    assert r.status_code == 413

    def chunks():
        for i in range(0, len(big), 1024 * 1024):
            yield big[i : i + 1024 * 1024]

    r = client.post(f"{STA}/Observations", content=chunks(), headers={**op, "Content-Type": "application/json"})
    assert r.status_code == 413
    _nothing_stored(client, viewer)
