"""Build requirements are data: parsed as PEP 508 requirements, or the build is refused."""

from __future__ import annotations

import pytest

from builder.build_requirements import parse_build_requirements
from builder.errors import BuildRequirementRefused, DirectUrlRefused


def parse(*entries: object, allow: bool = False) -> list[str]:
    return parse_build_requirements(entries, source="build-system.requires", allow_direct_urls=allow)


def test_requirements_are_normalised_and_sorted() -> None:
    assert parse("wheel", "setuptools >= 61", 'cython; python_version < "3.13"', "wheel") == [
        'cython; python_version < "3.13"',
        "setuptools>=61",
        "wheel",
    ]


@pytest.mark.parametrize(
    "entry",
    [
        "--config-file=/data/index-password",
        "--target=/data/wheels",
        "-e .",
        "-r requirements.txt",
        "./",
        "../sibling",
        "/etc",
        "file:///etc/passwd",
        "evil @ file:///etc/passwd",
        "evil @ git+ssh://host/repo",
        "setuptools\n--index-url=http://evil",
        "setuptools --hash=sha256:00",
        "",
    ],
)
def test_anything_but_a_requirement_is_refused(entry: str) -> None:
    with pytest.raises(BuildRequirementRefused) as info:
        parse("setuptools", entry)
    assert repr(entry) in info.value.message
    assert info.value.reference == "build-requirement-refused"
    assert info.value.hint and "PEP 508" in info.value.hint


def test_a_non_string_is_refused() -> None:
    with pytest.raises(BuildRequirementRefused):
        parse(["setuptools"])


def test_a_direct_url_is_refused_unless_allowed() -> None:
    url = "evil @ http://127.0.0.1:9/evil-1.0-py3-none-any.whl"
    with pytest.raises(DirectUrlRefused) as info:
        parse(url)
    assert info.value.reference == "direct-url-requirement-refused"
    assert info.value.hint and "WHEELYARD_ALLOW_DIRECT_URL_REQUIREMENTS" in info.value.hint
    assert parse(url, allow=True) == [url]
    with pytest.raises(BuildRequirementRefused):
        parse("evil @ file:///x.whl", allow=True)
