from django.shortcuts import get_object_or_404
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from studies.selectors import study_list_for


class StudyOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()
    n_items = serializers.IntegerField()
    n_sentinels = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class StudyListApi(APIView):
    """The researcher's own studies (superusers see all)."""

    def get(self, request):
        studies = study_list_for(user=request.user)
        return Response(StudyOutputSerializer(studies, many=True).data)


class StudyDetailApi(APIView):
    def get(self, request, study_id):
        study = get_object_or_404(study_list_for(user=request.user), id=study_id)
        return Response(StudyOutputSerializer(study).data)
