from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.services import system_status


class PingApi(APIView):
    """Liveness of the web process and its database."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    class OutputSerializer(serializers.Serializer):
        status = serializers.CharField()
        database = serializers.CharField()
        version = serializers.CharField()

    @extend_schema(responses=OutputSerializer)
    def get(self, request):
        return Response(self.OutputSerializer(system_status()).data)


def paged(request, page: dict) -> dict:
    """The body of one page of a list API: {"count", "next", "previous", "results"}, the links absolute
    (?page= on this path) or null at either end. `page` has "count", "page", "pages" and "results"."""

    def link(number: int) -> str | None:
        if not 1 <= number <= page["pages"] or number == page["page"]:
            return None
        return request.build_absolute_uri(f"{request.path}?page={number}")

    return {
        "count": page["count"],
        "next": link(page["page"] + 1),
        "previous": link(page["page"] - 1),
        "results": page["results"],
    }


def paged_schema(name: str, results) -> serializers.Serializer:
    """The OpenAPI shape of `paged`'s body, its results described by the serializer `results` (many)."""
    return inline_serializer(
        name,
        {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": results,
        },
    )
