"""The browser UIs: static pages that get all their data from the REST API.

Nothing of ours is imported here; the composition root mounts :data:`STATIC_DIR` on the cloud app.
"""

from pathlib import Path

__all__ = ["PAGES", "STATIC_DIR"]

STATIC_DIR = Path(__file__).parent / "static"
#: URL path → file under STATIC_DIR for the pages of the product.
PAGES = {
    "/": "index.html",  # residents: doors, parcels, notifications
    "/courier": "courier.html",  # couriers: deposits and their parcels
}
