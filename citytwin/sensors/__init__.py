"""Middleware: OGC SensorThings API 1.1 entities, ingest (HTTP, MQTT, replay), feeds, quality, privacy.

The service core (:mod:`citytwin.sensors.service`) knows no web framework; the FastAPI router
(:mod:`citytwin.api.routers.sensors`), the MQTT bridge (:mod:`citytwin.sensors.mqtt`) and the
replay (:mod:`citytwin.sensors.replay`) are thin adapters over it and share one ingest function
(:func:`citytwin.sensors.ingest.ingest_observations`).
"""
