"""Researcher API for continuous training: retrain now; a study's trained models, their cards and
downloads (owner and superusers only, as exports; others get 404)."""

from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exceptions import ApplicationError
from core.storage import stream_response
from studies.apis import owned_study
from training.bundles import bundle_name, model_bundle, model_files
from training.models import ModelVersion
from training.selectors import model_card, model_versions_for, owned_model_version, trunk_of
from training.triggers import training_request


class StudyTrainApi(APIView):
    """Retrain and evaluate now. `variants` adds on-demand "tune" / "scratch" training (the trunk trains
    too: slow on a CPU); lin heads are retrained on every run anyway. Within
    PERCEPTLAB_MIN_RETRAIN_INTERVAL_S of the last retrain queued or finished: 429 with Retry-After."""

    class InputSerializer(serializers.Serializer):
        variants = serializers.ListField(
            child=serializers.ChoiceField(choices=["lin", "tune", "scratch"]), required=False
        )

    @extend_schema(
        request=InputSerializer,
        responses={202: inline_serializer("TrainQueued", {"queued": serializers.BooleanField()})},
    )
    def post(self, request, study_id):
        study = owned_study(request, study_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            queued = training_request(study=study, force=True, variants=data.validated_data.get("variants"))
        except ApplicationError as exc:  # 429 inside the minimum interval between retrains
            if exc.status_code != status.HTTP_429_TOO_MANY_REQUESTS:
                raise
            return Response(
                {"message": exc.message, "extra": exc.extra},
                status=exc.status_code,
                headers={"Retry-After": str(exc.extra["retry_after_s"])},
            )
        return Response({"queued": queued}, status=status.HTTP_202_ACCEPTED)


class ModelVersionOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    study = serializers.UUIDField(source="study_id")
    name = serializers.CharField(source="__str__")
    backbone = serializers.CharField(help_text="the net: alex, vgg or squeeze")
    weights = serializers.CharField(help_text="the trunk that ran: imagenet, kmeans or random")
    variant = serializers.CharField()
    version = serializers.IntegerField()
    status = serializers.CharField()
    trunk = serializers.SerializerMethodField(help_text="requested, used, reason, source, corpus, shipped")
    n_train_items = serializers.IntegerField()
    n_train_judgments = serializers.IntegerField()
    heads_sha256 = serializers.CharField()
    trunk_sha256 = serializers.CharField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    download_url = serializers.SerializerMethodField()

    def get_trunk(self, version) -> dict:
        return trunk_of(version)

    def get_download_url(self, version) -> str | None:
        ready = version.status == ModelVersion.Status.READY
        return f"/api/v1/models/{version.pk}/download/" if ready else None


class ModelVersionDetailSerializer(ModelVersionOutputSerializer):
    card = serializers.SerializerMethodField(help_text="the model card (held-out 2AFC with CI, data, trunk)")

    def get_card(self, version) -> dict | None:
        return model_card(version=version) if version.status == ModelVersion.Status.READY else None


class StudyModelListApi(APIView):
    """A study's model versions, newest first (ready, running and failed)."""

    @extend_schema(responses=ModelVersionOutputSerializer(many=True))
    def get(self, request, study_id):
        study = owned_study(request, study_id)
        return Response(ModelVersionOutputSerializer(model_versions_for(study=study), many=True).data)


class ModelVersionDetailApi(APIView):
    """One model version, with its model card once it is ready."""

    @extend_schema(responses=ModelVersionDetailSerializer)
    def get(self, request, model_id):
        return Response(ModelVersionDetailSerializer(owned_model_version(request, model_id)).data)


class ModelVersionDownloadApi(APIView):
    """A ready model version as a zip bundle (heads.pth in the lpips format, trunk.pth when the trunk is
    not torchvision's ImageNet one, model_card.json, MODEL_CARD.md; load it with metric.bundle.load_bundle
    or `python -m metric distance --model`), or with `?part=heads` the heads file alone. A version that is
    not ready: 409."""

    class FilterSerializer(serializers.Serializer):
        part = serializers.ChoiceField(choices=["bundle", "heads"], default="bundle", required=False)

    @extend_schema(
        parameters=[FilterSerializer],
        responses={(200, "application/zip"): OpenApiTypes.BINARY},
    )
    def get(self, request, model_id):
        version = owned_model_version(request, model_id)
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        if query.validated_data.get("part") == "heads":
            heads, _trunk = model_files(version=version)
            response = FileResponse(
                heads.open("rb"),
                as_attachment=True,
                filename=f"{bundle_name(version)}-heads.pth",
                content_type="application/octet-stream",
            )
            response["ETag"] = f'"{version.heads_sha256}"'
            return response
        name = model_bundle(version=version)
        return stream_response(
            name, content_type="application/zip", filename=name.rsplit("/", 1)[-1], as_attachment=True
        )
