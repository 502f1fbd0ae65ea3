"""What tenants tell the apps above them (they connect in their AppConfig.ready()); sent inside the action's
transaction, so a receiver that fails rolls the action back."""
from django.dispatch import Signal

# A pending tenant was approved (its trial starts): kwargs tenant.
tenant_approved = Signal()

# A platform admin changed a tenant (kwargs tenant, changes: the fields given, acting_user): billing makes the
# subscription follow a new plan or trial end, so limits and the billing clock read one truth.
tenant_updated = Signal()

# An owner scheduled the workspace's deletion (kwargs tenant, acting_user): whatsapp stops and unlinks its sessions.
workspace_deletion_scheduled = Signal()

# A tenant is being deleted (kwargs tenant, schema_name), sent inside delete_tenant's transaction while its rows
# and schema are still there: receivers note what they keep outside the database for it (session store files,
# media, data export files) and remove it on commit.
tenant_deleting = Signal()
