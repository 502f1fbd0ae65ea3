"""core.phones: E.164 from what people write, and never a number nobody meant."""
import pytest

from core.errors import CommonError, DomainError
from core.phones import PhoneError, normalize_phone


@pytest.mark.parametrize("written, e164", [
    ("+14155550123", "+14155550123"), ("+1 (415) 555-0123", "+14155550123"), ("+62 812.3456.7890", "+6281234567890"),
])
def test_numbers_as_people_write_them(written, e164):
    assert normalize_phone(written) == e164


def test_digits_mean_international_only_when_asked():
    assert normalize_phone("14155550123", digits_mean_international=True) == "+14155550123"
    with pytest.raises(DomainError):
        normalize_phone("14155550123")


@pytest.mark.parametrize("written", ["+1415abc0123", "+1-800-FLOWERS", "+14155550123x", "", "+", "abc", "++1415"])
def test_letters_and_junk_are_refused_not_dialled_on_a_keypad(written):
    with pytest.raises(DomainError) as refused:
        normalize_phone(written)
    assert refused.value.code == PhoneError.INVALID_PHONE and refused.value.status == 400


def test_the_caller_names_the_code():
    with pytest.raises(DomainError) as refused:
        normalize_phone("+1415abc0123", code=CommonError.VALIDATION_ERROR)
    assert refused.value.code == CommonError.VALIDATION_ERROR
