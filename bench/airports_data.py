"""Airports-like CSV partitions for the record-path benchmarks: the columns of the OurAirports
table (tests/fixtures/airports.csv), values drawn deterministically so every run measures the
same bytes."""

from __future__ import annotations

import csv
import random
from pathlib import Path

HEADER = ["id", "ident", "type", "name", "latitude_deg", "longitude_deg", "elevation_ft", "continent",
          "iso_country", "iso_region", "municipality", "scheduled_service", "gps_code", "iata_code",
          "local_code", "home_link", "wikipedia_link", "keywords"]
_TYPES = ["small_airport", "heliport", "medium_airport", "closed", "large_airport", "seaplane_base"]
_WORDS = ["Regional", "International", "County", "Municipal", "Field", "Airpark", "Air Base", "Strip",
          "Lake", "River", "Mount", "Saint", "North", "South", "Valley", "Harbor", "Island", "Ranch"]
_CONTINENTS = ["NA", "EU", "AS", "SA", "AF", "OC"]
_COUNTRIES = ["US", "GB", "FR", "DE", "BR", "AU", "CA", "IN", "JP", "ZA", "MX", "AR"]


def _row(rng: random.Random, n: int) -> list[str]:
    country = rng.choice(_COUNTRIES)
    town = f"{rng.choice(_WORDS)} {rng.choice(_WORDS)}ville"
    ident = f"{country[0]}{n:05d}"
    iata = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(3)) if rng.random() < 0.3 else ""
    return [str(n), ident, rng.choice(_TYPES), f"{town} {rng.choice(_WORDS)} Airport",
            f"{rng.uniform(-60, 70):.6f}", f"{rng.uniform(-180, 180):.6f}", str(rng.randint(-50, 12000)),
            rng.choice(_CONTINENTS), country, f"{country}-{rng.randint(1, 60):02d}", town,
            rng.choice(["yes", "no"]), ident if rng.random() < 0.6 else "", iata, ident[-4:],
            f"https://{town.lower().replace(' ', '')}.example/" if rng.random() < 0.2 else "",
            f"https://en.wikipedia.org/wiki/{town.replace(' ', '_')}_Airport" if rng.random() < 0.4 else "",
            ", ".join(rng.sample(_WORDS, 2)) if rng.random() < 0.3 else ""]


def write_airports(directory: Path, rows: int, files: int = 1, *, seed: int = 12) -> list[Path]:
    """``rows`` airports rows split evenly over ``files`` CSV files (each with the header)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths, per_file = [], -(-rows // files)
    for index in range(files):
        path = directory / f"part-{index:04d}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(HEADER)
            for n in range(index * per_file, min(rows, (index + 1) * per_file)):
                writer.writerow(_row(rng, n + 1))
        paths.append(path)
    return paths
