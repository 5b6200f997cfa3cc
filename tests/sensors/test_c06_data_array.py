"""Conformance class 6: dataArray — POST /CreateObservations and $resultFormat=dataArray."""

from __future__ import annotations

from tests.sensors.conftest import STA, create, thing_body


def test_create_observations_and_read_as_data_array(client, op, viewer):
    tid = create(client, op, "Things", thing_body(n_streams=2))
    d1, d2 = [d["@iot.id"] for d in client.get(f"{STA}/Things({tid})/Datastreams", headers=viewer).json()["value"]]
    foi = client.get(f"{STA}/FeaturesOfInterest", headers=viewer).json()["value"]
    body = [
        {"Datastream": {"@iot.id": d1}, "components": ["phenomenonTime", "result"],
         "dataArray@iot.count": 3,
         "dataArray": [["2024-01-01T00:00:00Z", 1], ["2024-01-01T00:01:00Z", 2], ["2024-01-01T00:02:00Z", "bad"]]},
        {"Datastream": {"@iot.id": d2}, "components": ["result", "phenomenonTime", "parameters"],
         "dataArray": [[7, "2024-01-01T00:00:00Z", {"m": 1}], [8]]},
    ]
    r = client.post(f"{STA}/CreateObservations", json=body, headers=op)
    assert r.status_code == 201, r.text
    out = r.json()
    assert len(out) == 5
    assert out[2] == "error" and out[4] == "error"
    assert all("/Observations(" in u for i, u in enumerate(out) if i not in (2, 4))
    assert foi == []  # FeatureOfInterest generated on first use
    assert client.get(f"{STA}/FeaturesOfInterest", headers=viewer).json()["value"]
    r = client.get(f"{STA}/Observations?$resultFormat=dataArray&$select=result,phenomenonTime", headers=viewer).json()
    groups = {g["Datastream@iot.navigationLink"].rsplit("(", 1)[1].rstrip(")"): g for g in r["value"]}
    assert groups[str(d1)]["components"] == ["result", "phenomenonTime"]
    assert groups[str(d1)]["dataArray"] == [[1, "2024-01-01T00:00:00Z"], [2, "2024-01-01T00:01:00Z"]]
    assert groups[str(d2)]["dataArray@iot.count"] == 1


def test_create_observations_rejects_malformed(client, op, viewer):
    for bad in [{}, [{"components": ["result"], "dataArray": []}], [{"Datastream": {"@iot.id": 1}, "components": ["nope"], "dataArray": []}]]:
        r = client.post(f"{STA}/CreateObservations", json=bad, headers=op)
        assert r.status_code == 400, bad
    assert client.get(f"{STA}/Observations", headers=viewer).json()["value"] == []
