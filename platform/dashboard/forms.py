"""Django forms of the researcher pages (they validate input; the services decide)."""

from django import forms

from judgments.reviews import REASON_MAX
from studies.models import Study


class StudyFilterForm(forms.Form):
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=[("", "All statuses"), *Study.Status.choices],
    )


class WorkerReviewForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    reason = forms.CharField(
        label="Reason",
        required=False,
        max_length=REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 2, "maxlength": REASON_MAX}),
    )
