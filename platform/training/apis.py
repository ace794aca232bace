"""Researcher API for continuous training: retrain now."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exceptions import ApplicationError
from studies.apis import owned_study
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
