"""What tenants tell the apps above them (they connect in their AppConfig.ready()); sent inside the action's
transaction, so a receiver that fails rolls the action back."""
from django.dispatch import Signal

# A pending tenant was approved (its trial starts): kwargs tenant.
tenant_approved = Signal()

# A platform admin changed a tenant (kwargs tenant, changes: the fields given, acting_user): billing makes the
# subscription follow a new plan or trial end, so limits and the billing clock read one truth.
tenant_updated = Signal()
