"""Comparing model instances built by core.rows with the ORM's for the same rows (the speed path's tests)."""


def loaded_fields(instance):
    """{attname: (type, value, tzinfo)} of every concrete field of `instance`, read from the instance itself: a
    field a statement left out is deferred, and reading it through its attribute would fetch it and hide the gap."""
    missing = [f.attname for f in type(instance)._meta.concrete_fields if f.attname not in instance.__dict__]
    assert not missing, f"{type(instance).__name__} {instance.pk}: not loaded: {', '.join(missing)}"
    return {f.attname: (type(value), value, getattr(value, "tzinfo", None))
            for f in type(instance)._meta.concrete_fields for value in [instance.__dict__[f.attname]]}


def assert_same_instance(found, expected):
    """`found` holds what the ORM built as `expected`: both None, or the same model, the same saved state and, in
    every concrete field (_meta.concrete_fields: a field added to the model is compared too), the same value of
    the same type in the same time zone."""
    if found is None or expected is None:
        assert found is expected, f"{found!r} vs the ORM's {expected!r}"
        return
    assert type(found) is type(expected), f"{type(found).__name__} vs the ORM's {type(expected).__name__}"
    assert (found._state.adding, found._state.db) == (expected._state.adding, expected._state.db)
    ours, orm = loaded_fields(found), loaded_fields(expected)
    differing = {name: (ours[name], orm[name]) for name in orm if ours[name] != orm[name]}
    assert not differing, f"{type(found).__name__} {found.pk}, (ours, the ORM's) per field: {differing}"


def assert_same_instances(found, expected):
    """assert_same_instance for each of two sequences, in order."""
    assert len(found) == len(expected), f"{len(found)} instances vs the ORM's {len(expected)}"
    for ours, orm in zip(found, expected):
        assert_same_instance(ours, orm)
