"""Researcher API for source photo sets (studies.sources): a researcher uploads, lists, reads and deletes only
their own; another researcher's set id is a 404, as for one that does not exist."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from studies.models import SourcePhotoSet
from studies.sources import source_set_create, source_set_delete, source_set_for, source_set_list_for


class SourceSetOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    n_images = serializers.IntegerField()
    min_side = serializers.IntegerField()
    total_bytes = serializers.IntegerField()
    digest = serializers.CharField()
    created_at = serializers.DateTimeField()
    build_source = serializers.SerializerMethodField(help_text="what a build_config names to use this set")

    def get_build_source(self, photo_set) -> dict:
        return {"type": "upload", "id": str(photo_set.pk)}


class SourceSetDetailOutputSerializer(SourceSetOutputSerializer):
    photos = serializers.SerializerMethodField()

    def get_photos(self, photo_set) -> list[dict]:
        return [
            {
                "name": f["name"],
                "sha256": f["file"].split(".")[0],
                "width": f["width"],
                "height": f["height"],
                "bytes": f["bytes"],
            }
            for f in photo_set.files
        ]


def owned_source_set(request, set_id) -> SourcePhotoSet:
    photo_set = source_set_for(owner=request.user, set_id=set_id)
    if photo_set is None:
        raise Http404("no such source photo set")
    return photo_set


class SourceSetListApi(APIView):
    """The researcher's source photo sets, or upload one: a zip of PNG/JPEG photographs (limits in
    settings.PERCEPTLAB_SOURCE_LIMITS). A build config then names `{"type": "upload", "id": <set id>}`."""

    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        archive = serializers.FileField()
        name = serializers.CharField(max_length=200, default="photos")

    @extend_schema(responses=SourceSetOutputSerializer(many=True))
    def get(self, request):
        return Response(SourceSetOutputSerializer(source_set_list_for(user=request.user), many=True).data)

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={
            201: SourceSetDetailOutputSerializer,
            413: OpenApiResponse(description="archive over the size cap"),
        },
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        photo_set = source_set_create(
            owner=request.user, name=data.validated_data["name"], archive=data.validated_data["archive"]
        )
        return Response(SourceSetDetailOutputSerializer(photo_set).data, status=status.HTTP_201_CREATED)


class SourceSetDetailApi(APIView):
    """One of the researcher's source photo sets; DELETE removes it and its files (409 while a study
    waiting for its build names it)."""

    @extend_schema(responses=SourceSetDetailOutputSerializer)
    def get(self, request, set_id):
        return Response(SourceSetDetailOutputSerializer(owned_source_set(request, set_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, set_id):
        source_set_delete(photo_set=owned_source_set(request, set_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
