"""Schemathesis hooks for the suite's schema fuzz (tests/test_api_fuzz.py): a schema-valid request may be refused with
400 only for a rule the schema cannot state, named by its code (core.schema.RULES_BEYOND_THE_SCHEMA)."""
import json
import os

import schemathesis

RULES = set(json.loads(os.environ["SWITCHBOARD_FUZZ_RULES"]))


def _has_nul_key(value):
    """Whether a map in the body has a key with a NUL: every map's keys are bounded by x-propertyNames in the schema
    (core.schema), which schemathesis does not apply to OpenAPI 3.0, so such a body is not schema-valid."""
    if isinstance(value, dict):
        return any("\x00" in str(key) or _has_nul_key(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul_key(item) for item in value)
    return False


@schemathesis.check
def schema_valid_requests_are_refused_only_for_named_rules(ctx, response, case):
    if response.status_code != 400 or case.meta is None or case.meta.generation.mode.name.lower() != "positive":
        return None
    if _has_nul_key(case.body):
        return None
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        raise AssertionError(f"a schema-valid request was refused with 400 outside the envelope: {response.text[:200]}")
    if code not in RULES:
        raise AssertionError(f"a schema-valid request was refused with 400 {code}, a rule the schema does not state "
                             "(state it in the schema, or list it in core.schema.RULES_BEYOND_THE_SCHEMA)")
    return None
