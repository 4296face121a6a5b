//! Whether a point is in France: metropolitan France and the five overseas departments, from
//! the Natural Earth boundary in `registry/data/france.geojson` (source and conversion in
//! `registry/data/README.md`), with an even-odd point-in-polygon test. No network.

use serde_json::Value;

/// The boundary as shipped, compiled into the binary.
const FRANCE_GEOJSON: &str = include_str!("../../../data/france.geojson");

/// One polygon: its outer ring, its holes, and a bounding box to skip it quickly.
#[derive(Debug, Clone)]
struct Polygon {
    /// Outer ring first, then holes; `(lon, lat)` degrees.
    rings: Vec<Vec<(f64, f64)>>,
    /// `(lon min, lat min, lon max, lat max)` of the outer ring.
    bbox: (f64, f64, f64, f64),
}

/// The land of France, as polygons.
#[derive(Debug, Clone)]
pub struct France {
    polygons: Vec<Polygon>,
}

impl France {
    /// Reads the shipped boundary. Fails only if the file in the repository is broken.
    pub fn load() -> Result<Self, String> {
        Self::parse(FRANCE_GEOJSON)
    }

    /// Reads a GeoJSON `FeatureCollection` of `Polygon` features.
    fn parse(text: &str) -> Result<Self, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let features = doc["features"].as_array().ok_or("no \"features\" array")?;
        let polygons = features
            .iter()
            .map(|f| polygon(&f["geometry"]["coordinates"]))
            .collect::<Result<Vec<_>, _>>()?;
        if polygons.is_empty() {
            return Err("no polygon".to_owned());
        }
        Ok(Self { polygons })
    }

    /// Whether (`lat`, `lon`) in degrees is inside one of the polygons (and none of its holes).
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        in_polygons(&self.polygons, lat, lon)
    }
}

/// A region drawn by a GeoJSON `Polygon` or `MultiPolygon` geometry (an incentive
/// campaign's area), with the same point-in-polygon test as [`France`].
#[derive(Debug, Clone)]
pub struct Area {
    polygons: Vec<Polygon>,
}

impl Area {
    /// Reads `{"type":"Polygon"|"MultiPolygon","coordinates":...}` (lon, lat order).
    pub fn from_geometry(geometry: &Value) -> Result<Self, String> {
        let coordinates = &geometry["coordinates"];
        let polygons = match geometry["type"].as_str() {
            Some("Polygon") => vec![polygon(coordinates)?],
            Some("MultiPolygon") => coordinates
                .as_array()
                .ok_or("MultiPolygon without coordinates")?
                .iter()
                .map(polygon)
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err("must be a GeoJSON Polygon or MultiPolygon".to_owned()),
        };
        if polygons.is_empty() {
            return Err("no polygon".to_owned());
        }
        Ok(Self { polygons })
    }

    /// Whether (`lat`, `lon`) in degrees is inside the area.
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        in_polygons(&self.polygons, lat, lon)
    }
}

fn in_polygons(polygons: &[Polygon], lat: f64, lon: f64) -> bool {
    polygons.iter().any(|p| {
        let (x0, y0, x1, y1) = p.bbox;
        (x0..=x1).contains(&lon)
            && (y0..=y1).contains(&lat)
            && p.rings.first().is_some_and(|outer| inside(outer, lon, lat))
            && !p.rings[1..].iter().any(|hole| inside(hole, lon, lat))
    })
}

fn polygon(coordinates: &Value) -> Result<Polygon, String> {
    let rings = coordinates
        .as_array()
        .ok_or("polygon without coordinates")?
        .iter()
        .map(ring)
        .collect::<Result<Vec<_>, _>>()?;
    let outer = rings.first().ok_or("polygon without rings")?;
    let bbox = outer.iter().fold(
        (f64::MAX, f64::MAX, f64::MIN, f64::MIN),
        |(x0, y0, x1, y1), &(x, y)| (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
    );
    Ok(Polygon { rings, bbox })
}

fn ring(points: &Value) -> Result<Vec<(f64, f64)>, String> {
    let points = points.as_array().ok_or("ring is not an array")?;
    let ring = points
        .iter()
        .map(|p| match (p[0].as_f64(), p[1].as_f64()) {
            (Some(lon), Some(lat)) => Ok((lon, lat)),
            _ => Err(format!("bad point {p}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ring.len() < 4 {
        return Err("ring of fewer than 4 points".to_owned());
    }
    Ok(ring)
}

/// Even-odd rule: a ray from the point towards +x crosses the ring an odd number of times.
fn inside(ring: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut inside = false;
    let mut previous = ring[ring.len() - 1];
    for &current in ring {
        let ((xi, yi), (xj, yj)) = (current, previous);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        previous = current;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_boundary_places_cities_inside_or_outside_france() {
        let france = France::load().expect("shipped boundary loads");
        let cases = [
            ("Paris", 48.8566, 2.3522, true),
            ("Lyon", 45.764, 4.8357, true),
            ("Strasbourg", 48.5734, 7.7521, true),
            ("Corte, Corsica", 42.306, 9.15, true),
            ("Brest", 48.3904, -4.4861, true),
            ("Pointe-à-Pitre, Guadeloupe", 16.2411, -61.5331, true),
            ("Fort-de-France, Martinique", 14.6161, -61.0588, true),
            ("Cayenne, French Guiana", 4.9372, -52.326, true),
            ("Saint-Denis, Réunion", -20.8789, 55.4481, true),
            ("Combani, Mayotte", -12.78, 45.14, true),
            ("Kehl, Germany", 48.5727, 7.8158, false),
            ("Geneva, Switzerland", 46.2044, 6.1432, false),
            ("Brussels, Belgium", 50.8503, 4.3517, false),
            ("Barcelona, Spain", 41.3874, 2.1686, false),
            ("Llívia, a Spanish enclave", 42.4639, 1.9806, false),
            ("London", 51.5072, -0.1276, false),
            ("Bay of Biscay", 45.5, -3.0, false),
            ("Nouméa, New Caledonia", -22.2758, 166.458, false),
        ];
        for (name, lat, lon, expected) in cases {
            assert_eq!(france.contains(lat, lon), expected, "{name}");
        }
    }

    #[test]
    fn point_in_polygon_honours_holes() {
        let text = r#"{"type":"FeatureCollection","features":[{"type":"Feature","geometry":
            {"type":"Polygon","coordinates":[[[0,0],[10,0],[10,10],[0,10],[0,0]],
            [[4,4],[6,4],[6,6],[4,6],[4,4]]]}}]}"#;
        let square = France::parse(text).expect("parses");
        assert!(square.contains(1.0, 1.0));
        assert!(!square.contains(5.0, 5.0));
        assert!(!square.contains(11.0, 5.0));
        assert!(France::parse(r#"{"features":[]}"#).is_err());
    }

    #[test]
    fn areas_read_polygons_and_multipolygons() {
        let square = |x: i32| {
            format!(
                "[[[{x},0],[{},0],[{},10],[{x},10],[{x},0]]]",
                x + 10,
                x + 10
            )
        };
        let polygon: Value = serde_json::from_str(&format!(
            r#"{{"type":"Polygon","coordinates":{}}}"#,
            square(0)
        ))
        .unwrap();
        let area = Area::from_geometry(&polygon).expect("polygon");
        assert!(area.contains(5.0, 5.0) && !area.contains(5.0, 25.0));
        let multi: Value = serde_json::from_str(&format!(
            r#"{{"type":"MultiPolygon","coordinates":[{},{}]}}"#,
            square(0),
            square(20)
        ))
        .unwrap();
        let area = Area::from_geometry(&multi).expect("multipolygon");
        assert!(area.contains(5.0, 5.0) && area.contains(5.0, 25.0) && !area.contains(5.0, 15.0));
        for bad in [
            r#"{"type":"Point","coordinates":[1,2]}"#,
            r#"{"type":"Polygon","coordinates":[[[0,0],[1,1]]]}"#,
            r#"{"type":"MultiPolygon","coordinates":[]}"#,
        ] {
            let geometry: Value = serde_json::from_str(bad).unwrap();
            assert!(Area::from_geometry(&geometry).is_err(), "{bad}");
        }
    }
}
