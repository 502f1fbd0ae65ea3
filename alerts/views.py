"""The alert history (platform admins): every incident, firing ones first, with what each channel was told."""
from django.db.models import Case, IntegerField, Value, When
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from core.permissions import Perm, permission_required

from .models import Alert

SHOWN = 200


@never_cache
@permission_required(Perm.PLATFORM, hide=True)
def alert_history(request):
    alerts = (Alert.objects.select_related("tenant")
              .annotate(order=Case(When(state=Alert.State.FIRING, then=Value(0)), default=Value(1),
                                   output_field=IntegerField()))
              .order_by("order", "-started_at", "-id")[:SHOWN])
    return render(request, "alerts/history.html", {"alerts": alerts})
