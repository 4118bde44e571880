"""Checks every example in the OpenAPI document against the schema next to it.

openapi-spec-validator checks the document's structure but not whether its examples match their schemas; the
examples are real answers of the gateway, so a mismatch means the document and the gateway disagree.
"""

import sys

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

BASE = "urn:profile-jobs-gateway"


def main(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    registry = Registry().with_resource(BASE, Resource(contents=document, specification=DRAFT202012))

    def resolve(node):
        while isinstance(node, dict) and "$ref" in node:
            node = registry.resolver(BASE).lookup(BASE + node["$ref"]).contents
        return node

    def absolute(node):
        """The schema with its document-relative references made absolute, so that it can stand alone."""
        if isinstance(node, dict):
            return {k: (BASE + v if k == "$ref" else absolute(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [absolute(v) for v in node]
        return node

    failures = checked = 0

    def check(where: str, media: dict):
        nonlocal failures, checked
        schema = media.get("schema")
        if schema is None:
            return
        validator = Draft202012Validator(
            absolute(schema),
            registry=registry,
            format_checker=FormatChecker(),
        )
        for name, example in (media.get("examples") or {}).items():
            checked += 1
            for error in validator.iter_errors(resolve(example)["value"]):
                failures += 1
                print(f"{where} example '{name}': {error.message} at {list(error.absolute_path)}")

    def walk(where: str, node: dict):
        for media_type, media in (resolve(node).get("content") or {}).items():
            check(f"{where} {media_type}", media)

    for path_name, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            if "requestBody" in operation:
                walk(f"{method.upper()} {path_name} request", operation["requestBody"])
            for status, response in operation["responses"].items():
                walk(f"{method.upper()} {path_name} {status}", response)

    print(f"{checked} examples checked, {failures} not matching their schema")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
