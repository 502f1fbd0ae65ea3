"""core.api.CopiedFieldsSerializer validates exactly as the serializer it speeds up (core.api.StrictSerializer, DRF's
Serializer with the JSON types checked) does with the same fields (it only copies them more cheaply), and serializers
made from it never share a bound field."""
import threading

import pytest
from core.api import StrictSerializer
from whatsapp.messaging.api import SendMessageSerializer


class PlainSendMessageSerializer(StrictSerializer):
    """The same declared fields on the serializer it copies for."""


PlainSendMessageSerializer._declared_fields = SendMessageSerializer._declared_fields

BODIES = [
    {"session": "front-desk", "to": "+14155550123", "text": "hello"},
    {},
    {"session": "", "to": 5, "type": "x" * 30, "latitude": "abc", "text": None, "reply_to": ["a"],
     "contact": {"name": "Budi"}, "file": "not a file"},
    {"session": "s" * 65, "to": "+1", "longitude": "1e999", "reaction": "👍" * 40, "caption": "\x00"},
    {"session": "front-desk", "to": "+14155550123", "type": "location", "latitude": "-6.2", "longitude": 106.8},
    {"session": True, "to": None, "media_url": "u" * 2001, "filename": 3.5, "text": "\ud800"},
]


@pytest.mark.parametrize("body", BODIES)
def test_it_validates_like_drfs_serializer(body):
    copied, plain = SendMessageSerializer(data=body), PlainSendMessageSerializer(data=body)
    assert copied.is_valid() == plain.is_valid()
    assert copied.errors == plain.errors
    if plain.is_valid():
        assert copied.validated_data == plain.validated_data


def test_serializers_get_fields_of_their_own():
    first, second = SendMessageSerializer(data=BODIES[0]), SendMessageSerializer(data=BODIES[2])
    assert all(first.fields[name] is not second.fields[name] for name in first.fields)
    assert first.fields["session"].parent is first and second.fields["session"].parent is second


def test_concurrent_validations_do_not_mix():
    results, errors = {}, []

    def validate(index):
        try:
            for _ in range(200):
                serializer = SendMessageSerializer(data=BODIES[index % len(BODIES)])
                serializer.is_valid()
                results.setdefault(index, set()).add(str(serializer.errors))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=validate, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert all(len(outcomes) == 1 for outcomes in results.values())  # the same body, the same answer each time
