"""Story 7 on the cloud side: a copy of the database files reveals no name and no phone number.

Runs on a SQLite file (not ``database_url``) because the point is to read the raw bytes of every
file the database consists of: the main file, the write-ahead log and its index.
"""

from __future__ import annotations

import json
from pathlib import Path

from cloud_sync.service import audit, directory, provisioning
from cloud_sync.service.db import Database
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.migrate import upgrade
from cloud_sync.service.passwords import PasswordHasher

PEOPLE = [
    ("欧阳娜娜", "+86 139-1234-5678"),
    ("Zebulon Quixote-Marchbanks", "8613698765432"),
    ("司马懿", "13544448888"),
]
SITE_NAME = "Plaintext Control Court"  # not personal: stored as is, so it must be found


def _needles(name: str, phone: str) -> list[bytes]:
    digits = directory.normalize_phone(phone)
    found: list[bytes] = []
    for text in (name, digits, "+86" + digits, "86" + digits, phone):
        found += [text.encode("utf-8"), text.encode("utf-16-le"), text.encode("utf-16-be")]
    found.append(json.dumps(name).encode())  # \\uXXXX escapes, as JSON would store them
    return found


def _files(db_file: Path) -> dict[str, bytes]:
    names = (db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm"))
    return {p.name: p.read_bytes() for p in names if p.exists()}


async def test_database_files_hold_no_name_or_phone(tmp_path: Path, hasher: PasswordHasher) -> None:
    db_file = tmp_path / "cloud.db"
    url = f"sqlite+aiosqlite:///{db_file}"
    keys = CloudKeys.load_or_create(tmp_path / "keys")
    await upgrade(url)
    db = Database(url)
    try:
        async with db.session() as s:
            site = await provisioning.create_site(s, SITE_NAME)
            assert site.id is not None
            building = await provisioning.create_building(s, site.id, "1")
            assert building.id is not None
            unit = await provisioning.create_unit(s, site.id, building.id, "1-101")
            assert unit.id is not None
            for i, (name, phone) in enumerate(PEOPLE):
                resident = await directory.create_resident(s, keys, site.id, name, phone)
                assert resident.id is not None
                await provisioning.add_membership(s, site.id, resident.id, unit.id, "member")
                await provisioning.create_account(
                    s,
                    hasher,
                    site_id=site.id,
                    login=f"resident{i}",
                    password=f"{phone}-pw",
                    role="resident",
                    resident_id=resident.id,
                )
                # What an admin's unmask would record: sealed under the resident's key.
                data_key = await directory.resident_key(s, keys, resident.id)
                await audit.append(
                    s,
                    site_id=site.id,
                    actor="admin",
                    action="resident.unmask",
                    obj=f"resident:{resident.id}",
                    detail={"name": name, "phone": phone},
                    seal_for=data_key,
                )
            await s.commit()
        while_open = _files(db_file)
    finally:
        await db.dispose()
    after_close = _files(db_file)

    assert "cloud.db-wal" in while_open  # the log was read while it held the new pages
    for label, files in (("open", while_open), ("closed", after_close)):
        everything = b"".join(files.values())
        assert SITE_NAME.encode() in everything, label  # the search does see stored text
        for name, phone in PEOPLE:
            for needle in _needles(name, phone):
                assert needle not in everything, (label, needle)
