"""Drive a live server with the independent ``frost-sta-client`` package."""

from __future__ import annotations

import socket
import threading
import time

import frost_sta_client as fsc
import pytest
import uvicorn
from frost_sta_client.service.auth_handler import AuthHandler
from geojson import Point

from citytwin.api.app import create_app
from citytwin.settings import Settings
from tests.sensors.conftest import PASSWORD

# the third-party client uses a deprecated furl attribute; that is not our warning to fix
pytestmark = pytest.mark.filterwarnings("ignore:furl.pathstr is deprecated:DeprecationWarning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_url(tmp_path, engine):
    app = create_app(Settings(data_dir=tmp_path, secret_key="x" * 40), engine=engine, run_migrations=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/sta/v1.1"
    server.should_exit = True
    thread.join(timeout=10)


def test_frost_client_create_list_page_patch_delete(live_url):
    service = fsc.SensorThingsService(live_url, auth_handler=AuthHandler(username="operator", password=PASSWORD))
    location = fsc.Location(name="Dam", description="Dam square", encoding_type="application/geo+json",
                            location=Point((4.893, 52.3731)))
    thing = fsc.Thing(name="camera 1", description="counting camera", properties={"zone": "Dam"}, locations=[location])
    streams = []
    for i in range(2):
        streams.append(fsc.Datastream(
            name=f"people {i}", description="people per minute",
            observation_type="http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
            unit_of_measurement=fsc.UnitOfMeasurement(name="count", symbol="{count}", definition="http://unitsofmeasure.org"),
            sensor=fsc.Sensor(name="cam", description="camera", encoding_type="application/pdf", metadata="https://example.org"),
            observed_property=fsc.ObservedProperty(name=f"people {i}", definition="https://example.org/people", description="people"),
        ))
    thing.datastreams = streams
    service.create(thing)
    assert thing.id is not None

    found = service.things().find(thing.id)
    assert found.name == "camera 1"
    ds_list = list(service.datastreams().query().filter(f"Thing/id eq {thing.id}").list())
    assert len(ds_list) == 2
    ds = ds_list[0]
    for i in range(25):
        obs = fsc.Observation(result=i, phenomenon_time=f"2024-05-01T10:{i:02d}:00Z", datastream=ds)
        service.create(obs)
        assert obs.id is not None
    # list across pages: the client follows @iot.nextLink
    results = [o.result for o in service.observations().query().top(10).list()]
    assert results == list(range(25))
    filtered = list(service.observations().query().filter("result gt 20").orderby("result", "ASC").list())
    assert [o.result for o in filtered] == [21, 22, 23, 24]

    service.patch(found, [{"op": "replace", "path": "/name", "value": "camera one"}])
    assert service.things().find(thing.id).name == "camera one"
    found = service.things().find(thing.id)
    found.description = "updated with PUT"
    service.update(found)
    assert service.things().find(thing.id).description == "updated with PUT"

    service.delete(found)
    assert list(service.things().query().list()) == []
    assert list(service.observations().query().list()) == []
