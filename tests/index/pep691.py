"""Validation against our PEP 691 (+ PEP 700, PEP 714) JSON schema, for the tests."""

import json
from pathlib import Path

import jsonschema

SCHEMA = json.loads((Path(__file__).parent / "pep691_schema.json").read_text())


def validate(doc, definition):
    """*doc* must be a valid ``project-list`` or ``project-detail`` document."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    schema = dict(SCHEMA, **{"$ref": f"#/$defs/{definition}"})
    del schema["anyOf"]
    jsonschema.Draft202012Validator(schema).validate(doc)
