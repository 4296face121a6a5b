#!/usr/bin/env python3
"""Extracts France (metropolitan France, Corsica and the five overseas departments) from
world-atlas' countries-10m.json (Natural Earth admin-0, 1:10m) into france.geojson.

Usage: python3 france_from_world_atlas.py <path to countries-10m.json> > france.geojson

Decodes the TopoJSON arcs (quantized, delta-encoded), keeps the polygons of the feature with
id "250" (France) with their holes, rounds to 4 decimals
(about 11 m) and names each polygon after the region its bounding box falls in.
"""
import json
import sys

# Bounding boxes (lon min, lat min, lon max, lat max) of the regions kept.
REGIONS = [
    ("Metropolitan France", (-5.5, 41.0, 10.0, 51.5)),
    ("Guadeloupe", (-62.0, 15.8, -60.9, 16.6)),
    ("Martinique", (-61.3, 14.3, -60.7, 15.0)),
    ("French Guiana", (-54.7, 2.0, -51.5, 6.0)),
    ("Reunion", (55.1, -21.5, 56.0, -20.8)),
    ("Mayotte", (44.9, -13.1, 45.4, -12.5)),
]


def decode_arcs(topology):
    sx, sy = topology["transform"]["scale"]
    tx, ty = topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x += dx
            y += dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def ring(arcs, indexes):
    points = []
    for i in indexes:
        arc = arcs[i] if i >= 0 else list(reversed(arcs[~i]))
        points.extend(arc if not points else arc[1:])
    return points


def region_of(points):
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    for name, (x0, y0, x1, y1) in REGIONS:
        if x0 <= min(lons) and max(lons) <= x1 and y0 <= min(lats) and max(lats) <= y1:
            return name
    return None


def main(path):
    topology = json.load(open(path))
    arcs = decode_arcs(topology)
    france = next(
        g for g in topology["objects"]["countries"]["geometries"] if g.get("id") == "250"
    )
    features = []
    for polygon in france["arcs"]:
        outer = ring(arcs, polygon[0])
        name = region_of(outer)
        if name is None:
            print(f"skipped a polygon near {outer[0]}", file=sys.stderr)
            continue
        rings = [
            [[round(x, 4), round(y, 4)] for x, y in ring(arcs, indexes)] for indexes in polygon
        ]
        features.append(
            {
                "type": "Feature",
                "properties": {"name": name},
                "geometry": {"type": "Polygon", "coordinates": rings},
            }
        )
    json.dump({"type": "FeatureCollection", "features": features}, sys.stdout,
              separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
