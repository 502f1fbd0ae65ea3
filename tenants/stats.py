"""Figures other apps add to a tenant's stats for platform admins (GET /api/v1/tenants/{id}/stats), registered in
their AppConfig.ready(): each a function of the tenant returning a dict of figures."""
_contributors = []


def contribute(function):
    if function not in _contributors:
        _contributors.append(function)


def of(tenant):
    figures = {}
    for function in _contributors:
        figures.update(function(tenant))
    return figures
