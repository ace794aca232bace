from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render

from studies.models import Item, Study
from studies.selectors import study_list_for


def study_preview(request, study_id):
    """Annotator entry point of a study. Until the annotator flow lands it shows the study's
    practice items (known answers, nothing secret) so a person can see the stimuli."""
    study = get_object_or_404(Study, pk=study_id, status=Study.Status.ACTIVE)
    practice = study.items.filter(role=Item.Role.PRACTICE).order_by("index")[:4]
    return render(request, "studies/preview.html", {"study": study, "practice": practice, "MEDIA_URL": settings.MEDIA_URL})


@login_required
def dashboard(request):
    return render(request, "studies/dashboard.html", {"studies": study_list_for(user=request.user)})
