"""A value shown on the page a POST redirects to, once (a new key's or endpoint's secret): it rides in the session,
never in the URL, and the page that shows it takes it out."""


def keep(request, name, value):
    request.session[f"once:{name}"] = value


def take(request, name):
    return request.session.pop(f"once:{name}", None)
