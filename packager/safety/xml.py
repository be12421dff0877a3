"""XML (PMML) read once and parsed by defusedxml with DTDs, entities and external references forbidden.

The parser sees the declarations, whatever the encoding (UTF-16, a BOM, a long comment before the
DOCTYPE all hid one from the byte search this replaces). ``read_checked_xml`` returns the bytes it
checked, so a caller hands exactly those to the next reader (JPMML) instead of opening the path again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from packager.errors import InputFileError, MissingDependency, UnsafeModelError

MAX_XML_BYTES = 1 << 30  # parsed in memory (ElementTree); the largest PMML forests we have seen are a few hundred MB
XINCLUDE = "{http://www.w3.org/2001/XInclude}"
WHY = "which can read local files or expand without bound"
UNSAFE_HINT = "PMML needs no DTD or entities: remove the declaration, or re-export the model"


def check_xml(path: str | Path) -> bytes:
    """Raise UnsafeModelError for a DOCTYPE, entity or external reference; return the bytes that were checked."""
    return read_checked_xml(path)[0]


def parse_xml(path: str | Path) -> Any:
    """The root element of a checked XML file."""
    return read_checked_xml(path)[1]


def read_checked_xml(path: str | Path) -> tuple[bytes, Any]:
    """Read ``path`` once; parse those bytes with DTDs, entities and external references forbidden."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_XML_BYTES:
            raise InputFileError(
                f"{path.name} is {size >> 20} MiB of XML (limit {MAX_XML_BYTES >> 20} MiB)", "this is not a PMML model packager can read"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read {path.name}: {exc.strerror or exc}", "check the path and its permissions") from None
    return data, parse_checked(data, path.name)


def parse_checked(data: bytes, label: str) -> Any:
    """Parse XML bytes; any DTD, entity declaration or external reference is refused, at any position and in any encoding."""
    try:
        from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
        from defusedxml.ElementTree import ParseError, fromstring
    except ImportError:
        raise MissingDependency("reading XML safely needs defusedxml", "pip install defusedxml") from None
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden as exc:
        raise UnsafeModelError(f"{label} declares a DOCTYPE ({exc.name}), {WHY}", UNSAFE_HINT) from None
    except EntitiesForbidden as exc:
        raise UnsafeModelError(f"{label} declares the entity {exc.name!r}, {WHY}", UNSAFE_HINT) from None
    except ExternalReferenceForbidden as exc:
        raise UnsafeModelError(f"{label} references an external resource ({exc.sysid or exc.pubid})", UNSAFE_HINT) from None
    except DefusedXmlException as exc:
        raise UnsafeModelError(f"{label} holds an XML construct refused as unsafe ({type(exc).__name__})", UNSAFE_HINT) from None
    except ParseError as exc:
        raise InputFileError(f"{label} is not well-formed XML ({exc})", "the file is truncated or corrupt; re-export it") from None
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.startswith(XINCLUDE):  # a reader with XInclude on would pull in another file
            raise UnsafeModelError(f"{label} has an XInclude element, which pulls another file into the document", UNSAFE_HINT)
    return root
