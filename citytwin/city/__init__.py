"""The base registry: buildings, street networks and monitoring zones of a city."""
