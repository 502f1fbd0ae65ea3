"""What tenants tell the apps above them (they connect in their AppConfig.ready()); sent inside the action's
transaction, so a receiver that fails rolls the action back."""
from django.dispatch import Signal

# A pending tenant was approved (its trial starts): kwargs tenant.
tenant_approved = Signal()
