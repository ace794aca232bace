from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from accounts.selectors import api_token_for
from accounts.services import api_token_create, api_token_regenerate, api_token_revoke

TOKEN_ACTIONS = {
    "create": (api_token_create, "Your API token is ready."),
    "regenerate": (api_token_regenerate, "A new API token replaces the old one, which no longer works."),
    "revoke": (api_token_revoke, "Your API token is revoked; scripts using it now get 401."),
}


@login_required
def api_token(request):
    """The researcher's DRF token: shown, created, regenerated or revoked (POST, CSRF)."""
    if request.method == "POST":
        action = TOKEN_ACTIONS.get(request.POST.get("action", ""))
        if action is None:
            messages.error(request, "Unknown action: choose create, regenerate or revoke.")
        else:
            service, done = action
            service(user=request.user)
            messages.info(request, done)
        return redirect("api-token")
    context = {
        "token": api_token_for(user=request.user),
        "api_root": request.build_absolute_uri("/api/v1/"),
    }
    return render(request, "accounts/token.html", context)
