"""XML parsing with external entities, DTDs and network access disabled (PMML and any XML input)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from packager.errors import InputFileError, UnsafeModelError


def check_xml(path: str | Path) -> None:
    parse_xml(path)


def parse_xml(path: str | Path) -> Any:
    """Parse an XML file, refusing DOCTYPE declarations (the carrier of XXE and entity bombs)."""
    import xml.etree.ElementTree as ET

    path = Path(path)
    data = path.read_bytes()
    head = data[:65536].lower()
    if b"<!doctype" in head or b"<!entity" in head:
        raise UnsafeModelError(
            f"{path.name} declares a DOCTYPE/ENTITY, which can read local files or expand without bound",
            "PMML needs no DTD: remove the declaration, or re-export the model",
        )
    parser = ET.XMLParser()
    try:
        parser.feed(data)
        return parser.close()
    except ET.ParseError as exc:
        raise InputFileError(f"{path.name} is not well-formed XML ({exc})", "the file is truncated or corrupt; re-export it") from exc
