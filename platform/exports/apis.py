"""Researcher API for dataset exports (asynchronous, versioned, immutable)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exceptions import ApplicationError
from core.storage import stream_response
from exports.models import Export
from exports.services import export_create
from studies.apis import owned_study


class ExportOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    study = serializers.UUIDField(source="study_id")
    version = serializers.IntegerField()
    status = serializers.CharField()
    include_excluded = serializers.BooleanField()
    include_user_agent = serializers.BooleanField()
    sha256 = serializers.CharField()
    size_bytes = serializers.IntegerField()
    summary = serializers.DictField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    download_url = serializers.SerializerMethodField()

    def get_download_url(self, export) -> str | None:
        return f"/api/v1/exports/{export.pk}/download/" if export.status == Export.Status.DONE else None


class StudyExportListApi(APIView):
    """List a study's exports, or start a new one (a Celery job; poll the export until `done`)."""

    class InputSerializer(serializers.Serializer):
        include_excluded = serializers.BooleanField(
            default=False, help_text="count judgments from QC-excluded assignments too"
        )
        include_user_agent = serializers.BooleanField(
            default=False,
            help_text="publish each judgment's browser user "
            "agent too (left out by default: it identifies participants)",
        )

    @extend_schema(responses=ExportOutputSerializer(many=True))
    def get(self, request, study_id):
        study = owned_study(request, study_id)
        return Response(ExportOutputSerializer(study.exports.all(), many=True).data)

    @extend_schema(request=InputSerializer, responses={202: ExportOutputSerializer})
    def post(self, request, study_id):
        study = owned_study(request, study_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        export = export_create(
            study=study,
            user=request.user,
            include_excluded=data.validated_data["include_excluded"],
            include_user_agent=data.validated_data["include_user_agent"],
        )
        return Response(ExportOutputSerializer(export).data, status=status.HTTP_202_ACCEPTED)


def owned_export(request, export_id) -> Export:
    export = get_object_or_404(Export.objects.select_related("study"), pk=export_id)
    if not (request.user.is_superuser or export.study.owner_id == request.user.pk):
        raise ApplicationError("Not found.", status_code=404)
    return export


class ExportDetailApi(APIView):
    @extend_schema(responses=ExportOutputSerializer)
    def get(self, request, export_id):
        return Response(ExportOutputSerializer(owned_export(request, export_id)).data)


class ExportDownloadApi(APIView):
    """The finished archive (application/zip)."""

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request, export_id):
        export = owned_export(request, export_id)
        if export.status != Export.Status.DONE:
            raise ApplicationError(
                f"the export is {export.status}", {"status": export.status}, status_code=409
            )
        try:
            response = stream_response(
                export.archive,
                content_type="application/zip",
                filename=export.archive.rsplit("/", 1)[-1],
                as_attachment=True,
            )
        except FileNotFoundError:
            missing = "the archive file is missing from media storage"
            raise ApplicationError(missing, status_code=410) from None
        response["ETag"] = f'"{export.sha256}"'
        return response
