"""openapi.yaml: a valid OpenAPI 3.1 document, and as precise as a generated client needs.

The routes it documents are checked against template.yaml in test_template.py; that the
functions keep to it, by Schemathesis in e2e/tests/contract.rs.
"""

import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from devtools.paths import ROOT

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def document():
    return yaml.safe_load((ROOT / "openapi.yaml").read_text())


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


def resolve(document, node):
    while isinstance(node, dict) and "$ref" in node:
        target = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_every_operation_names_itself_and_its_scope(document):
    ids = [operation["operationId"] for _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    for label, operation in operations(document):
        security = operation["security"]
        if label == "GET /health":
            assert security == []
        else:
            scope = "users:read" if label.startswith("GET ") else "users:write"
            assert security == [{"bearerAuth": [scope]}], label


def test_every_error_is_a_problem_and_every_protected_operation_documents_401_and_403(document):
    for label, operation in operations(document):
        responses = operation["responses"]
        for status, response in responses.items():
            response = resolve(document, response)
            if int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (label, status)
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (label, status)
        assert {"500", "503"} <= set(responses), label
        if operation["security"]:
            assert {"400", "401", "403"} <= set(responses), label


def test_every_object_schema_refuses_members_it_does_not_name(document):
    for name, schema in document["components"]["schemas"].items():
        if schema.get("type") == "object":
            assert schema.get("additionalProperties") is False, name
