"""Issue 7 item 9: one subject-id check and one printable-text rule, expressed in the
schemas (so the fuzz run checks positive data everywhere); one list of scenes from which
the schemas, the Literal types and the load tests derive."""

from __future__ import annotations

import json
import re
import unicodedata
from urllib.parse import quote

import pytest

from suishen.app.auth.dev_idp import check_subject
from suishen.app.auth.errors import InvalidSubject
from suishen.app.schemas import PartnerIn, SubjectIn, VerifyBody
from suishen.app.text import PRINTABLE_PATTERN, SUBJECT_PATTERN, is_valid_subject
from suishen.verifiers.policy import ATTRIBUTES, SCENES
from tests.api.conftest import Api

HOSTILE = ["a\u202eb", "a\u200bb", "a\x00b", "a\nb", "a\u00a0b", "a\u2028b", "\ufeffa",
           "a\ue000", "a\U000e0041", "\u00ad"]


def test_printable_rule_is_isprintable_for_assigned_characters() -> None:
    text = re.compile(PRINTABLE_PATTERN)
    differ = [
        hex(cp) for cp in range(0x110000)
        if unicodedata.category(chr(cp)) not in ("Cn", "Cs")  # unassigned; surrogates below
        and not (unicodedata.category(chr(cp)) == "Co" and cp >= 0xF0000)  # documented
        and (text.fullmatch(chr(cp)) is not None) != chr(cp).isprintable()
    ]
    assert differ == []


@pytest.mark.parametrize("sub", ["alice", "a b", "李雷", "x" * 255, "user@example.org"])
def test_valid_subjects(sub: str) -> None:
    assert is_valid_subject(sub) and re.fullmatch(SUBJECT_PATTERN, sub)
    check_subject(sub)


@pytest.mark.parametrize("sub", [" alice", "alice ", "", "x" * 256, "a\ud800", *HOSTILE])
def test_invalid_subjects(sub: str) -> None:
    assert not is_valid_subject(sub)
    with pytest.raises(InvalidSubject):
        check_subject(sub)


async def test_one_subject_check_for_admin_and_dev_token(api: Api) -> None:
    for bad in (" alice", "alice ", *HOSTILE):
        put = await api.client.put(f"/v1/admin/subjects/{quote(bad, safe='')}",
                                   headers=api.admin, json={"status": "active"})
        dev = await api.client.post("/v1/dev/citizen-token", json={"sub": bad})
        assert (put.status_code, dev.status_code) == (422, 422), bad
        assert put.headers["content-type"] == dev.headers["content-type"] == (
            "application/problem+json")
    put = await api.client.put("/v1/admin/subjects/a%20b", headers=api.admin,
                               json={"status": "active"})
    assert put.status_code == 200 and put.json()["sub"] == "a b"
    assert (await api.client.post("/v1/dev/citizen-token", json={"sub": "a b"})).status_code == 200


async def test_partner_names_and_attribute_values_are_printable(api: Api) -> None:
    for bad in HOSTILE:
        r = await api.client.post("/v1/admin/partners", headers=api.admin,
                                  json={"name": bad, "scenes": ["library"]})
        assert r.status_code == 422, bad
        r = await api.client.put("/v1/admin/subjects/attr", headers=api.admin,
                                 json={"status": "active", "attributes": {"name": bad}})
        assert r.status_code == 422, bad
    r = await api.client.put("/v1/admin/subjects/attr", headers=api.admin,
                             json={"status": "active", "attributes": {"name": "Ann Lee 李"}})
    assert r.status_code == 200


async def test_the_schema_documents_the_rules(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert schemas["DevTokenIn"]["properties"]["sub"]["pattern"] == SUBJECT_PATTERN
    assert schemas["PartnerIn"]["properties"]["name"]["pattern"] == PRINTABLE_PATTERN
    values = schemas["SubjectIn"]["properties"]["attributes"]["additionalProperties"]
    assert values["pattern"] == PRINTABLE_PATTERN
    put = doc["paths"]["/v1/admin/subjects/{sub}"]["put"]
    (sub,) = [p for p in put["parameters"] if p["name"] == "sub"]
    assert sub["schema"]["pattern"] == SUBJECT_PATTERN
    json.dumps(doc).encode()  # the document is encodable (no surrogates in patterns)


def test_one_list_of_scenes() -> None:
    from loadtests.common.city import SCENE_ATTRIBUTES

    partner = PartnerIn.model_json_schema()["properties"]
    assert set(partner["scenes"]["items"]["enum"]) == set(SCENES)
    assert set(partner["attributes"]["items"]["enum"]) == set(ATTRIBUTES)
    assert set(SubjectIn.model_json_schema()["properties"]["attributes"]["propertyNames"]
               ["enum"]) == set(ATTRIBUTES)
    import msgspec

    (_body,), components = msgspec.json.schema_components([VerifyBody])
    assert set(components["VerifyBody"]["properties"]["scene"]["enum"]) == set(SCENES)
    assert set(SCENE_ATTRIBUTES) <= set(SCENES)
    assert all(set(attrs) <= ATTRIBUTES for attrs in SCENE_ATTRIBUTES.values())
