"""Conformance class 2: create, update (merge patch, JSON Patch, PUT), delete with cascade; access."""

from __future__ import annotations

from citytwin.sensors import keys
from tests.sensors.conftest import STA, create, thing_body


def _stream(client, op, viewer):
    tid = create(client, op, "Things", thing_body())
    did = client.get(f"{STA}/Things({tid})/Datastreams", headers=viewer).json()["value"][0]["@iot.id"]
    return tid, did


def test_create_returns_201_location_and_entity(client, op):
    r = client.post(f"{STA}/Sensors", json={"name": "s", "description": "d", "encodingType": "text/html", "metadata": "x"}, headers=op)
    assert r.status_code == 201
    assert r.headers["Location"] == r.json()["@iot.selfLink"]


def test_merge_patch_json_patch_and_put(client, op, viewer):
    tid, did = _stream(client, op, viewer)
    r = client.patch(f"{STA}/Things({tid})", json={"name": "renamed", "properties": {"a": 1}}, headers=op)
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    r = client.patch(f"{STA}/Things({tid})", content=b'[{"op": "replace", "path": "/description", "value": "new"},'
                     b'{"op": "add", "path": "/properties/b", "value": 2}]',
                     headers={**op, "Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    t = client.get(f"{STA}/Things({tid})", headers=viewer).json()
    assert t["description"] == "new" and t["properties"] == {"a": 1, "b": 2} and t["name"] == "renamed"
    r = client.put(f"{STA}/Things({tid})", json={"name": "put", "description": "whole"}, headers=op)
    assert r.status_code == 200 and r.json()["properties"] is None
    assert client.put(f"{STA}/Things({tid})", json={"name": "no description"}, headers=op).status_code == 400


def test_patch_thing_locations_adds_historical_location(client, op, viewer):
    tid, _ = _stream(client, op, viewer)
    lid = create(client, op, "Locations", {"name": "Museumplein", "description": "square", "encodingType": "application/geo+json",
                                           "location": {"type": "Point", "coordinates": [4.88, 52.357]}})
    assert client.patch(f"{STA}/Things({tid})", json={"Locations": [{"@iot.id": lid}]}, headers=op).status_code == 200
    locs = client.get(f"{STA}/Things({tid})/Locations", headers=viewer).json()["value"]
    assert [loc["@iot.id"] for loc in locs] == [lid]
    assert len(client.get(f"{STA}/Things({tid})/HistoricalLocations", headers=viewer).json()["value"]) == 2


def test_delete_thing_cascades_to_datastreams_and_observations(client, op, viewer):
    tid, did = _stream(client, op, viewer)
    oid = create(client, op, "Observations", {"result": 1, "Datastream": {"@iot.id": did}})
    assert client.delete(f"{STA}/Things({tid})", headers=op).status_code == 200
    assert client.get(f"{STA}/Datastreams({did})", headers=viewer).status_code == 404
    assert client.get(f"{STA}/Observations({oid})", headers=viewer).status_code == 404
    assert client.get(f"{STA}/HistoricalLocations", headers=viewer).json()["value"] == []
    # sensors and locations survive
    assert len(client.get(f"{STA}/Sensors", headers=viewer).json()["value"]) == 1
    assert len(client.get(f"{STA}/Locations", headers=viewer).json()["value"]) == 1


def test_delete_sensor_cascades(client, op, viewer):
    _, did = _stream(client, op, viewer)
    sid = client.get(f"{STA}/Datastreams({did})/Sensor", headers=viewer).json()["@iot.id"]
    assert client.delete(f"{STA}/Sensors({sid})", headers=op).status_code == 200
    assert client.get(f"{STA}/Datastreams({did})", headers=viewer).status_code == 404


def test_update_and_delete_observation_keeps_latest_consistent(client, op, viewer):
    _, did = _stream(client, op, viewer)
    a = create(client, op, "Observations", {"result": 1, "phenomenonTime": "2024-01-01T00:00:00Z", "Datastream": {"@iot.id": did}})
    b = create(client, op, "Observations", {"result": 2, "phenomenonTime": "2024-01-02T00:00:00Z", "Datastream": {"@iot.id": did}})
    assert client.patch(f"{STA}/Observations({a})", json={"result": 10}, headers=op).json()["result"] == 10
    assert client.delete(f"{STA}/Observations({b})", headers=op).status_code == 200
    ds = client.get(f"{STA}/Datastreams({did})", headers=viewer).json()
    assert ds["phenomenonTime"] == "2024-01-01T00:00:00Z/2024-01-01T00:00:00Z"


def test_viewer_cannot_write_and_operator_can(client, op, viewer):
    assert client.post(f"{STA}/Things", json=thing_body(), headers=viewer).status_code == 403
    tid, did = _stream(client, op, viewer)
    assert client.patch(f"{STA}/Things({tid})", json={"name": "x"}, headers=viewer).status_code == 403
    assert client.delete(f"{STA}/Things({tid})", headers=viewer).status_code == 403
    assert client.post(f"{STA}/Observations", json={"result": 1, "Datastream": {"@iot.id": did}}, headers=viewer).status_code == 403


def test_api_key_scoped_bearer_and_basic_and_revocable(client, op, viewer, engine):
    _, d1 = _stream(client, op, viewer)
    _, d2 = _stream(client, op, viewer)
    with engine.begin() as conn:
        kid, tok = keys.create_key(conn, name="camera-1", datastreams=[d1])
    bearer = {"Authorization": f"Bearer {tok}"}
    assert client.post(f"{STA}/Observations", json={"result": 5, "Datastream": {"@iot.id": d1}}, headers=bearer).status_code == 201
    r = client.post(f"{STA}/Observations", json={"result": 5, "Datastream": {"@iot.id": d2}}, headers=bearer)
    assert r.status_code == 403 and str(d2) in r.json()["message"]
    r = client.post(f"{STA}/CreateObservations", json=[{"Datastream": {"@iot.id": d2}, "components": ["result"], "dataArray": [[1]]}], headers=bearer)
    assert r.status_code == 403
    assert client.post(f"{STA}/Things", json=thing_body(), headers=bearer).status_code == 403
    assert client.get(f"{STA}/Observations", headers=bearer).status_code == 200
    r = client.post(f"{STA}/Observations", json={"result": 6, "Datastream": {"@iot.id": d1}}, auth=("anything", tok))
    assert r.status_code == 201
    # keys never unlock the /api user routes
    assert client.get("/api/cities", headers=bearer).status_code in (401, 403, 404)
    with engine.begin() as conn:
        assert keys.revoke_key(conn, kid)
        assert keys.list_keys(conn)[0]["revoked_at"] is not None
    assert client.post(f"{STA}/Observations", json={"result": 7, "Datastream": {"@iot.id": d1}}, headers=bearer).status_code == 401
    assert client.get(f"{STA}/Datastreams({d2})/Observations", headers=viewer).json()["value"] == []


def test_basic_auth_with_user_credentials(client, op):
    assert client.get(f"{STA}/Things", auth=("viewer", "correct-horse-battery")).status_code == 200
    assert client.get(f"{STA}/Things", auth=("viewer", "wrong-password-here")).status_code == 401
    assert client.post(f"{STA}/Things", json=thing_body(), auth=("operator", "correct-horse-battery")).status_code == 201


def test_nested_post_and_ref_link(client, op, viewer):
    tid, _ = _stream(client, op, viewer)
    did = create(client, op, f"Things({tid})/Datastreams", {
        "name": "n", "description": "d", "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Observation",
        "unitOfMeasurement": {}, "Sensor": {"@iot.id": 1}, "ObservedProperty": {"@iot.id": 1}})
    assert client.get(f"{STA}/Datastreams({did})/Thing", headers=viewer).json()["@iot.id"] == tid
    lid = create(client, op, "Locations", {"name": "l", "description": "d", "encodingType": "application/geo+json",
                                           "location": {"type": "Point", "coordinates": [1, 2]}})
    assert client.post(f"{STA}/Things({tid})/Locations/$ref", json={"@iot.id": lid}, headers=op).status_code == 204
    assert len(client.get(f"{STA}/Things({tid})/Locations", headers=viewer).json()["value"]) == 2
    assert client.delete(f"{STA}/Things({tid})/Locations({lid})/$ref", headers=op).status_code == 200
    assert len(client.get(f"{STA}/Things({tid})/Locations", headers=viewer).json()["value"]) == 1
