"""core.net: URLs people give are checked before anything connects; a malformed one is a DomainError (400
invalid_url), never an exception the API turns into a 500."""
import pytest

from core.net import NetError, TargetError, check_target


@pytest.mark.parametrize("url", [
    "http://\u0089\U00029c86\x12K]\u009a", "http://a]b/", "http://[::1/", "https://exa mple.com/", "http://\x00/",
    "ftp://example.com/", "https://user:pw@example.com/", "https://example.com:99999/", "http:///nohost",
])
def test_malformed_urls_are_invalid_url(url):
    with pytest.raises(TargetError) as refused:
        check_target(url, resolve=False)
    assert refused.value.code == NetError.INVALID_URL and refused.value.status == 400


@pytest.mark.parametrize("url", ["https://example.com/hook", "http://example.com:8080/x?y=1", "https://bücher.example/"])
def test_well_formed_urls_pass_the_form_check(url):
    assert check_target(url, resolve=False) is None
