"""Model instances from hand-written SQL, built the way the ORM builds them (Model.from_db, each field's
database converters applied), for the few statements every API request or every batch of messages runs.

Compiling a query with several joins costs the ORM more CPU than Postgres spends answering it (about 2 ms for
the API key's principal, whose answer takes 0.2 ms); those statements are written once here, their column lists
still taken from the models, so a new field is picked up without touching the SQL.
"""
from django.db import DEFAULT_DB_ALIAS, connection, connections


def columns(model, alias):
    """"alias"."col", … for every concrete field of `model`, in _meta order (what instance() reads)."""
    quote = connection.ops.quote_name
    return ", ".join(f"{quote(alias)}.{quote(field.column)}" for field in model._meta.concrete_fields)


_layouts = {}


def _layout(model):
    """(width, primary key position, attnames, [(position, column expression, converters)]) of `model`, made
    once (Postgres is the only database)."""
    found = _layouts.get(model)
    if found is None:
        db = connections[DEFAULT_DB_ALIAS]
        fields = model._meta.concrete_fields
        converters = []
        for index, field in enumerate(fields):
            column = field.get_col(model._meta.db_table)
            functions = db.ops.get_db_converters(column) + field.get_db_converters(db)
            if functions:
                converters.append((index, column, functions))
        found = _layouts[model] = (len(fields), [f.primary_key for f in fields].index(True),
                                   [f.attname for f in fields], converters)
    return found


def instance(model, values, db=None):
    """An instance of `model` from its columns (in columns() order), or None for a LEFT JOIN that found nothing
    (a NULL primary key)."""
    db = db or connections[DEFAULT_DB_ALIAS]
    _, pk_index, attnames, converters = _layout(model)
    if values[pk_index] is None:
        return None
    values = list(values)
    for index, column, functions in converters:
        for convert in functions:
            values[index] = convert(values[index], column, db)
    return model.from_db(db.alias, attnames, values)


def table(model):
    return connection.ops.quote_name(model._meta.db_table)


_statements = {}


def select(model, alias, rest, params, *, joined=(), extra=()):
    """SELECT the columns of `model` (as `alias`) and of each (model, alias) in `joined`, then the SQL
    expressions in `extra`, FROM model's table `alias` `rest` (the joins, WHERE, LIMIT …). Returns a list of
    instances of `model`, or, with `joined` or `extra`, of tuples (instance of model, instance or None per joined
    model, value per extra expression). The statement is put together once."""
    parts = ((model, alias), *joined)
    key = (parts, rest, tuple(extra))
    statement = _statements.get(key)
    if statement is None:
        selected = [columns(m, a) for m, a in parts] + list(extra)
        statement = _statements[key] = (f"SELECT {', '.join(selected)} "
                                        f"FROM {table(model)} {connection.ops.quote_name(alias)} {rest}")
    if not joined and not extra:
        return run(model, statement, params)
    db = connections[DEFAULT_DB_ALIAS]
    models = [m for m, _ in parts]
    with db.cursor() as cursor:
        cursor.execute(statement, params)
        return [(*_split(row, models, db), *row[len(row) - len(extra):]) for row in cursor.fetchall()]


def run(model, statement, params):
    """Instances of `model` from a statement whose rows are the model's columns in columns() order (a SELECT,
    or an UPDATE … RETURNING them)."""
    db = connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cursor:
        cursor.execute(statement, params)
        return [instance(model, row, db) for row in cursor.fetchall()]


def _split(row, models, db):
    start = 0
    for model in models:
        width = _layout(model)[0]
        yield instance(model, row[start:start + width], db)
        start += width
