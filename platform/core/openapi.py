"""OpenAPI post-processing: document the error responses every endpoint can give, in our one error shape
({"message", "extra"}), so that clients (and the schema fuzzer) know them."""

from drf_spectacular.openapi import AutoSchema as _AutoSchema

ERROR_CODES = {
    "400": "Invalid input; `message` says what, `extra.field` names the field",
    "401": "Not authenticated",
    "403": "Not allowed",
    "404": "Not found (also: another researcher's object)",
    "405": "Method not allowed",
    "409": "Conflict with the object's state (e.g. an answered trial, an inactive study)",
    "410": "Gone (an expired assignment, a missing archive)",
    "415": "Unsupported media type",
    "429": "Throttled",
}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"message": {"type": "string"}, "extra": {"type": "object", "additionalProperties": True}},
    "required": ["message", "extra"],
}


def add_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            responses = operation.setdefault("responses", {})
            for code, text in ERROR_CODES.items():
                responses.setdefault(
                    code,
                    {
                        "description": text,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                )
    return result


class AutoSchema(_AutoSchema):
    """Name nested serializers after their view (`StudyListApi.InputSerializer` -> `StudyListInput`), so
    the many `InputSerializer`s never collide as schema components."""

    def get_serializer_name(self, serializer, direction):
        qualname = serializer.__class__.__qualname__
        if "." in qualname:
            outer, inner = qualname.rsplit(".", 1)
            return outer.removesuffix("Api") + inner.removesuffix("Serializer")
        return super().get_serializer_name(serializer, direction)
