"""Matching an inbound text against keyword rules, case-insensitively.

Tenant regular expressions run on the `regex` engine with a timeout (REGEX_TIMEOUT_S): a pattern that backtracks
catastrophically on some text is stopped and counts as no match, and the host's event thread never hangs on it.
"""
import regex

from core.errors import DomainError

from .errors import AutomationError

REGEX_TIMEOUT_S = 0.02
MAX_TEXT = 4096  # longer texts are matched on their beginning

_compiled = {}


def compile_pattern(pattern):
    """The compiled regex, or 400 invalid_pattern."""
    try:
        return regex.compile(pattern, regex.IGNORECASE)
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        raise DomainError(AutomationError.INVALID_PATTERN, f"The regular expression is not valid: {exc}.",
                          {"pattern": pattern[:100]}) from exc


def _regex(pattern):
    compiled = _compiled.get(pattern)
    if compiled is None:
        if len(_compiled) > 10_000:
            _compiled.clear()
        compiled = _compiled[pattern] = compile_pattern(pattern)
    return compiled


def matches(match, pattern, text):
    """Whether `text` matches the rule's `pattern` under `match` (contains, equals, starts_with, regex)."""
    text = text[:MAX_TEXT]
    if match == "regex":
        try:
            return _regex(pattern).search(text, timeout=REGEX_TIMEOUT_S) is not None
        except (TimeoutError, DomainError):
            return False
    folded, wanted = text.casefold().strip(), pattern.casefold().strip()
    if match == "equals":
        return folded == wanted
    if match == "starts_with":
        return folded.startswith(wanted)
    return wanted in folded


def matcher(match, pattern):
    """matches() for one rule, with what can be done once done once: `(text, folded) -> bool`, where folded is
    text[:MAX_TEXT].casefold().strip() (the engine folds each message once for all its rules)."""
    if match == "regex":
        return lambda text, folded: matches(match, pattern, text)
    wanted = pattern.casefold().strip()
    if match == "equals":
        return lambda text, folded: folded == wanted
    if match == "starts_with":
        return lambda text, folded: folded.startswith(wanted)
    return lambda text, folded: wanted in folded


def fold(text):
    return text[:MAX_TEXT].casefold().strip()
