"""Tests of layerkit.engine.reference against the test tables of github.com/distribution/reference.

The tables come from the Go package's ``normalize_test.go`` and ``reference_test.go`` (current upstream);
expected error texts are those of the Go packages (``reference`` and ``go-digest`` v1.0.0). Cases that
exercise the bare grammar (Go's ``Parse``, no default domain) go through the private ``_parse``, since the
public functions always normalise.
"""

from __future__ import annotations

import pytest

from layerkit.engine.reference import (
    Reference,
    _parse,
    is_full_identifier,
    parse_docker_ref,
    parse_reference,
)
from layerkit.errors import InvalidReference, LayerkitError

F64 = "f" * 64
SHA256_F = "sha256:" + F64
SHA512_F = "sha512:" + "f" * 128
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"

INVALID_FORMAT = "invalid reference format"
TOO_LONG = "repository name must not be more than 255 characters"


def _lowercase(remote: str) -> str:
    return f"invalid reference format: repository name ({remote}) must be lowercase"


def _raises(s: str, message: str, parse=parse_reference) -> None:
    with pytest.raises(InvalidReference) as info:
        parse(s)
    assert str(info.value) == message


# --- normalize_test.go: TestValidateReferenceName ---------------------------------------------------------

VALID_REPO_NAMES = [
    "docker/docker",
    "library/debian",
    "debian",
    "docker.io/docker/docker",
    "docker.io/library/debian",
    "docker.io/debian",
    "index.docker.io/docker/docker",
    "index.docker.io/library/debian",
    "index.docker.io/debian",
    "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian",
    "127.0.0.1:5000/debian",
    "192.168.0.1",
    "192.168.0.1:80",
    "192.168.0.1:8/debian",
    "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker",
    "[fc00::1]:5000/docker/docker",
    "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    # A 64-hex path component is fine once a domain removes the ambiguity with an image ID.
    "docker.io/" + HEX64,
    "Docker/docker",
    "DOCKER/docker",
]


@pytest.mark.parametrize("name", VALID_REPO_NAMES)
def test_validate_reference_name_valid(name: str) -> None:
    ref = parse_reference(name)
    assert isinstance(ref, Reference)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("https://github.com/docker/docker", INVALID_FORMAT),
        ("docker/Docker", _lowercase("docker/Docker")),
        ("-docker", INVALID_FORMAT),
        ("-docker/docker", INVALID_FORMAT),
        ("-docker.io/docker/docker", INVALID_FORMAT),
        ("docker///docker", INVALID_FORMAT),
        ("docker.io/docker/Docker", _lowercase("docker/Docker")),
        ("docker.io/docker///docker", INVALID_FORMAT),
        ("[fc00::1]", INVALID_FORMAT),
        ("[fc00::1]:5000", INVALID_FORMAT),
        ("fc00::1:5000/debian", INVALID_FORMAT),
        ("[fe80::1%eth0]:5000/debian", INVALID_FORMAT),
        ("[2001:db8:3:4::192.0.2.33]:5000/debian", INVALID_FORMAT),
        (HEX64, f"invalid repository name ({HEX64}), cannot specify 64-byte hexadecimal strings"),
    ],
)
def test_validate_reference_name_invalid(name: str, message: str) -> None:
    _raises(name, message)


# --- normalize_test.go: TestValidateRemoteName ------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "docker/docker",
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",  # 64 chars, not all hex
        "docker-rules/docker",
        "docker---rules/docker",
        "doc/docker",
        "d/docker",
        "jess/t",
        "dock__er/docker",
    ],
)
def test_validate_remote_name_valid(name: str) -> None:
    assert parse_reference(name).path == (name if "/" in name else "library/" + name)


LONG_NAMESPACE = (
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker"
)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("docker/Docker", _lowercase("docker/Docker")),
        ("docker///docker", INVALID_FORMAT),
        (HEX64, f"invalid repository name ({HEX64}), cannot specify 64-byte hexadecimal strings"),
        ("-docker/docker", INVALID_FORMAT),
        ("docker-/docker", INVALID_FORMAT),
        ("-docker-/docker", INVALID_FORMAT),
        ("____/____", INVALID_FORMAT),
        ("_docker/_docker", INVALID_FORMAT),
        ("dock..er/docker", INVALID_FORMAT),
        ("dock_.er/docker", INVALID_FORMAT),
        ("dock-.er/docker", INVALID_FORMAT),
        ("docker/", INVALID_FORMAT),
        (LONG_NAMESPACE, TOO_LONG),
    ],
)
def test_validate_remote_name_invalid(name: str, message: str) -> None:
    _raises(name, message)


# --- normalize_test.go: TestParseRepositoryInfo -----------------------------------------------------------

# (path, familiar name, full name, ambiguous name or "", domain)
REPOSITORY_INFO = [
    ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io"),
    ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io"),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "", "docker.io"),
    ("other/library", "other/library", "docker.io/other/library", "", "docker.io"),
    ("private/moonbase", "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", "", "127.0.0.1:8000"),
    ("privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", "", "127.0.0.1:8000"),
    ("private/moonbase", "example.com/private/moonbase", "example.com/private/moonbase", "", "example.com"),
    ("privatebase", "example.com/privatebase", "example.com/privatebase", "", "example.com"),
    ("private/moonbase", "example.com:8000/private/moonbase", "example.com:8000/private/moonbase", "",
     "example.com:8000"),
    ("privatebasee", "example.com:8000/privatebasee", "example.com:8000/privatebasee", "", "example.com:8000"),
    ("library/ubuntu-12.04-base", "ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base",
     "index.docker.io/library/ubuntu-12.04-base", "docker.io"),
    ("library/foo", "foo", "docker.io/library/foo", "docker.io/foo", "docker.io"),
    ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", "", "docker.io"),
    ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", "", "docker.io"),
    ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
    ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
]


def _repository_info_cases():
    for path, familiar, full, ambiguous, domain in REPOSITORY_INFO:
        for s in (familiar, full, ambiguous):
            if s:
                yield pytest.param(s, path, familiar, full, domain, id=s)


@pytest.mark.parametrize(("s", "path", "familiar", "full", "domain"), list(_repository_info_cases()))
def test_parse_repository_info(s: str, path: str, familiar: str, full: str, domain: str) -> None:
    ref = parse_reference(s)
    assert ref.familiar_name == familiar
    assert str(ref) == full
    assert ref.repository == full
    assert ref.domain == domain
    assert ref.path == path


# --- normalize_test.go: TestParseReferenceWithTagAndDigest, TestInvalidReferenceComponents --------------


def test_parse_reference_with_tag_and_digest() -> None:
    short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    ref = parse_reference(short)
    assert str(ref) == "docker.io/library/" + short
    assert ref.tag == "latest"
    assert ref.digest == "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    assert ref.familiar == short
    assert ref.normalized == "docker.io/library/" + short


def test_invalid_reference_components() -> None:
    _raises("-foo", INVALID_FORMAT)
    ref = parse_reference("busybox")
    with pytest.raises(InvalidReference, match="^invalid tag format$"):
        ref.with_tag("-foo")


# --- normalize_test.go: TestParseAnyReference (the named cases) --------------------------------------------


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        ("redis", "docker.io/library/redis"),
        ("redis:latest", "docker.io/library/redis:latest"),
        ("docker.io/library/redis:latest", "docker.io/library/redis:latest"),
        ("redis@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
         "docker.io/library/redis@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"),
        ("dmcgowan/myapp", "docker.io/dmcgowan/myapp"),
        ("dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest"),
        ("docker.io/mcgowan/myapp:latest", "docker.io/mcgowan/myapp:latest"),
        ("dmcgowan/myapp@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
         "docker.io/dmcgowan/myapp@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"),
        # 63 hex digits are a name, not an ID.
        ("dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9",
         "docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9"),
        ("dbcc1", "docker.io/library/dbcc1"),
    ],
)
def test_parse_any_reference_named(s: str, expected: str) -> None:
    assert str(parse_reference(s)) == expected


@pytest.mark.parametrize("s", [SHA256_F, "sha384:" + "f" * 96, SHA512_F])
def test_bare_digest_is_not_a_name(s: str) -> None:
    # ParseAnyReference reads these as digest-only references; parse_reference refuses them.
    _raises(s, f"reference {s} has no name")


def test_digest_like_but_invalid_is_a_name() -> None:
    # Not a valid digest, so Go's ParseNormalizedNamed applies: repository "sha256", tag "abc".
    ref = parse_reference("sha256:abc")
    assert (ref.domain, ref.path, ref.tag) == ("docker.io", "library/sha256", "abc")


# --- normalize_test.go: TestNormalizedSplitHostname --------------------------------------------------------


@pytest.mark.parametrize(
    ("s", "domain", "path"),
    [
        ("test.com/foo", "test.com", "foo"),
        ("test_com/foo", "docker.io", "test_com/foo"),
        ("docker/migrator", "docker.io", "docker/migrator"),
        ("test.com:8080/foo", "test.com:8080", "foo"),
        ("test-com:8080/foo", "test-com:8080", "foo"),
        ("foo", "docker.io", "library/foo"),
        ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
        ("docker.io/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
        # localhost is always a domain, and gets no "library/".
        ("localhost/foo", "localhost", "foo"),
        ("localhost:5000/foo/bar", "localhost:5000", "foo/bar"),
        # A single component is never a domain, not even "localhost" or a host name (a Go FIXME).
        ("localhost", "docker.io", "library/localhost"),
        ("example.com", "docker.io", "library/example.com"),
    ],
)
def test_normalized_split_hostname(s: str, domain: str, path: str) -> None:
    ref = parse_reference(s)
    assert (ref.domain, ref.path) == (domain, path)


# --- normalize_test.go: TestParseDockerRef ----------------------------------------------------------------

E669 = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:latest", "docker.io/library/busybox:latest"),
        ("busybox@" + E669, "docker.io/library/busybox@" + E669),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox:latest", "docker.io/library/busybox:latest"),
        ("library/busybox:latest", "docker.io/library/busybox:latest"),
        ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
        ("gcr.io/library/busybox", "gcr.io/library/busybox:latest"),
        ("gcr.io/library/busybox:latest@" + E669, "gcr.io/library/busybox@" + E669),
    ],
)
def test_parse_docker_ref(s: str, expected: str) -> None:
    ref = parse_docker_ref(s)
    assert str(ref) == expected
    assert ref.normalized == expected
    # The output is itself a valid, already-normalised reference.
    assert str(parse_reference(expected)) == expected


def test_parse_docker_ref_drops_tag_when_digested() -> None:
    ref = parse_docker_ref("gcr.io/library/busybox:latest@" + E669)
    assert ref.tag is None
    assert ref.digest == E669


def test_parse_docker_ref_errors_pass_through() -> None:
    _raises("Busybox", _lowercase("library/Busybox"), parse=parse_docker_ref)


# --- reference_test.go: TestReferenceParse (Go's Parse: the bare grammar) -----------------------------------

# (input, repository, domain, tag, digest)
PARSE_VALID = [
    ("test_com", "test_com", "", None, None),
    ("test.com:tag", "test.com", "", "tag", None),
    ("test.com:5000", "test.com", "", "5000", None),
    ("test.com/repo:tag", "test.com/repo", "test.com", "tag", None),
    ("test:5000/repo", "test:5000/repo", "test:5000", None, None),
    ("test:5000/repo:tag", "test:5000/repo", "test:5000", "tag", None),
    ("test:5000/repo@" + SHA256_F, "test:5000/repo", "test:5000", None, SHA256_F),
    ("test:5000/repo:tag@" + SHA256_F, "test:5000/repo", "test:5000", "tag", SHA256_F),
    ("lowercase:Uppercase", "lowercase", "", "Uppercase", None),
    ("a/" * 127 + "a:tag-puts-this-over-max", "a/" * 127 + "a", "a", "tag-puts-this-over-max", None),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", None, None),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com",
     "some-long-tag", None),
    ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io/test.example.com/my-app", "b.gcr.io",
     "test.example.com", None),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage", "xn--n3h.com", "xn--n3h.com", None),
    ("xn--7o8h.com/myimage:xn--7o8h.com@" + SHA512_F, "xn--7o8h.com/myimage", "xn--7o8h.com", "xn--7o8h.com",
     SHA512_F),
    ("foo_bar.com:8080", "foo_bar.com", "", "8080", None),
    ("foo/foo_bar.com:8080", "foo/foo_bar.com", "foo", "8080", None),
    ("192.168.1.1", "192.168.1.1", "", None, None),
    ("192.168.1.1:tag", "192.168.1.1", "", "tag", None),
    ("192.168.1.1:5000", "192.168.1.1", "", "5000", None),
    ("192.168.1.1/repo", "192.168.1.1/repo", "192.168.1.1", None, None),
    ("192.168.1.1:5000/repo", "192.168.1.1:5000/repo", "192.168.1.1:5000", None, None),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000/repo", "192.168.1.1:5000", "5050", None),
    ("[2001:db8::1]/repo", "[2001:db8::1]/repo", "[2001:db8::1]", None, None),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]/repo", "[2001:db8:1:2:3:4:5:6]", "tag", None),
    ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", None, None),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "tag", None),
    ("[2001:db8::1]:5000/repo@" + SHA256_F, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", None, SHA256_F),
    ("[2001:db8::1]:5000/repo:tag@" + SHA256_F, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "tag",
     SHA256_F),
    ("[2001:db8::]:5000/repo", "[2001:db8::]:5000/repo", "[2001:db8::]:5000", None, None),
    ("[::1]:5000/repo", "[::1]:5000/repo", "[::1]:5000", None, None),
    ("example.com/" + "a" * 255 + ":tag", "example.com/" + "a" * 255, "example.com", "tag", None),
    # Current upstream limits the path, not domain + path: this was "too long" in older releases.
    ("a/" * 128 + "a:tag", "a/" * 128 + "a", "a", "tag", None),
]


@pytest.mark.parametrize(
    ("s", "repository", "domain", "tag", "digest"), PARSE_VALID, ids=[c[0][:60] for c in PARSE_VALID]
)
def test_reference_parse_valid(s: str, repository: str, domain: str, tag: str | None, digest: str | None) -> None:
    ref = _parse(s)
    assert str(ref) == s
    assert ref.repository == repository
    assert ref.domain == domain
    assert ref.tag == tag
    assert ref.digest == digest


@pytest.mark.parametrize(
    ("s", "message"),
    [
        ("", "repository name must have at least one component"),
        (":justtag", INVALID_FORMAT),
        ("@" + SHA256_F, INVALID_FORMAT),
        ("repo@sha256:" + "f" * 34, "invalid checksum digest length"),
        ("validname@invaliddigest:" + F64, "unsupported digest algorithm"),
        ("Uppercase:tag", "repository name must be lowercase"),
        ("test:5000/Uppercase/lowercase:tag", "repository name must be lowercase"),
        ("domain/" + "a" * 256 + ":tag", TOO_LONG),
        ("aa/asdf$$^/aa", INVALID_FORMAT),
        ("[2001:db8::1]", INVALID_FORMAT),
        ("[2001:db8::1]:5000", INVALID_FORMAT),
        ("[2001:db8::1]:tag", INVALID_FORMAT),
        ("[fe80::1%eth0]:5000/repo", INVALID_FORMAT),
        ("[fe80::1%@invalidzone]:5000/repo", INVALID_FORMAT),
    ],
)
def test_reference_parse_invalid(s: str, message: str) -> None:
    _raises(s, message, parse=_parse)


# --- the same table through parse_reference (ParseNormalizedNamed) -------------------------------------------


@pytest.mark.parametrize(
    ("s", "domain", "path", "tag", "digest"),
    [
        ("test_com", "docker.io", "library/test_com", None, None),
        ("test.com:tag", "docker.io", "library/test.com", "tag", None),
        ("test.com:5000", "docker.io", "library/test.com", "5000", None),
        ("test.com/repo:tag", "test.com", "repo", "tag", None),
        ("test:5000/repo:tag@" + SHA256_F, "test:5000", "repo", "tag", SHA256_F),
        ("lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", None),
        ("foo_bar.com:8080", "docker.io", "library/foo_bar.com", "8080", None),
        ("foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", "8080", None),
        ("192.168.1.1", "docker.io", "library/192.168.1.1", None, None),
        ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", "5050", None),
        ("[2001:db8::1]/repo", "[2001:db8::1]", "repo", None, None),
        ("[::1]:5000/repo", "[::1]:5000", "repo", None, None),
        ("xn--7o8h.com/myimage:xn--7o8h.com@" + SHA512_F, "xn--7o8h.com", "myimage", "xn--7o8h.com", SHA512_F),
        ("a/" * 127 + "a:tag-puts-this-over-max", "docker.io", "a/" * 127 + "a", "tag-puts-this-over-max", None),
        ("example.com/" + "a" * 255 + ":tag", "example.com", "a" * 255, "tag", None),
        # "library/" counts towards the 255: 8 + 247.
        ("a" * 247, "docker.io", "library/" + "a" * 247, None, None),
        ("busybox:" + "t" * 128, "docker.io", "library/busybox", "t" * 128, None),
        ("foo@sha384:" + "f" * 96, "docker.io", "library/foo", None, "sha384:" + "f" * 96),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else repr(v),
)
def test_normalized_parse_valid(s: str, domain: str, path: str, tag: str | None, digest: str | None) -> None:
    ref = parse_reference(s)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)


@pytest.mark.parametrize(
    ("s", "message"),
    [
        # Go: splitDockerDomain("") yields "docker.io/library/", which the grammar rejects.
        ("", INVALID_FORMAT),
        (":justtag", INVALID_FORMAT),
        ("@" + SHA256_F, INVALID_FORMAT),
        ("repo@sha256:" + "f" * 34, "invalid checksum digest length"),
        ("repo@sha256:" + "f" * 65, "invalid checksum digest length"),
        ("repo@sha256:" + "F" * 64, "invalid checksum digest format"),
        ("validname@invaliddigest:" + F64, "unsupported digest algorithm"),
        ("validname@md5:" + "f" * 32, "unsupported digest algorithm"),
        ("validname@sha256+b64:" + F64, "unsupported digest algorithm"),
        ("validname:tag@SHA256:" + F64, "invalid checksum digest format"),
        # Without a tag, Go cuts the "repository" at the digest's ":", so the uppercase algorithm
        # is reported as an uppercase repository name.
        ("validname@SHA256:" + F64, _lowercase("library/validname@SHA256")),
        ("Uppercase:tag", _lowercase("library/Uppercase")),
        ("Busybox", _lowercase("library/Busybox")),
        ("test:5000/Uppercase/lowercase:tag", _lowercase("Uppercase/lowercase")),
        # Uppercase first component is a domain; "_" makes it an invalid one, and lowercasing fixes it.
        ("Foo_Bar/baz", "repository name must be lowercase"),
        ("domain/" + "a" * 256 + ":tag", TOO_LONG),
        ("a/" * 128 + "a:tag", TOO_LONG),
        ("a" * 248, TOO_LONG),
        ("busybox:" + "t" * 129, INVALID_FORMAT),
        ("busybox:.tag", INVALID_FORMAT),
        ("busybox:-tag", INVALID_FORMAT),
        ("aa/asdf$$^/aa", INVALID_FORMAT),
        ("[2001:db8::1]:5000", INVALID_FORMAT),
        ("[fe80::1%eth0]:5000/repo", INVALID_FORMAT),
        # Go's "$" does not match before a trailing newline; Python's would.
        ("busybox\n", INVALID_FORMAT),
        ("busybox ", INVALID_FORMAT),
        ("bus\u00e9box", INVALID_FORMAT),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else repr(v),
)
def test_normalized_parse_invalid(s: str, message: str) -> None:
    _raises(s, message)


def test_domain_rejected_by_grammar_becomes_a_path() -> None:
    # "my_host.com" looks like a domain to splitDockerDomain (it has a dot) but not to the grammar,
    # so Go's Parse reads the whole name as a path with no domain. Reproduced as-is.
    ref = parse_reference("my_host.com/foo:1")
    assert (ref.domain, ref.path, ref.tag) == ("", "my_host.com/foo", "1")
    assert ref.repository == "my_host.com/foo"
    assert ref.familiar == "my_host.com/foo:1"
    assert ref.normalized == "my_host.com/foo:1"


def test_long_garbage_fails_fast() -> None:
    # Guards against catastrophic backtracking in the translated patterns.
    for s in ("a" * 20000 + "!", "a." * 5000 + "!", "a-" * 5000 + "/!", "x/" + "a__" * 5000 + "_"):
        _raises(s, INVALID_FORMAT)


def test_invalid_reference_is_a_layerkit_error() -> None:
    with pytest.raises(LayerkitError):
        parse_reference("UPPER")


# --- reference_test.go: TestWithTag -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tag", "combined"),
    [
        ("test.com/foo", "tag", "test.com/foo:tag"),
        ("test.com:8000/foo", "tag4", "test.com:8000/foo:tag4"),
        ("test.com:8000/foo", "TAG5", "test.com:8000/foo:TAG5"),
        ("test.com:8000/foo@" + SHA256_F, "TAG5", "test.com:8000/foo:TAG5@" + SHA256_F),
        ("test.com:8000/foo:old", "new", "test.com:8000/foo:new"),
        ("foo", "tag2", "docker.io/library/foo:tag2"),
        ("foo", "_" + "a" * 127, "docker.io/library/foo:_" + "a" * 127),
    ],
)
def test_with_tag(name: str, tag: str, combined: str) -> None:
    ref = parse_reference(name)
    before = str(ref)
    tagged = ref.with_tag(tag)
    assert str(tagged) == combined
    assert tagged.tag == tag
    assert tagged.digest == ref.digest
    assert str(ref) == before  # a new Reference; the original is frozen


@pytest.mark.parametrize("tag", ["", "-foo", ".foo", "foo bar", "a" * 129, "foo:bar", "foo/bar", "t\u00e9"])
def test_with_tag_invalid(tag: str) -> None:
    with pytest.raises(InvalidReference, match="^invalid tag format$"):
        parse_reference("busybox").with_tag(tag)


# --- properties and to_json() --------------------------------------------------------------------------------

JSON_KEYS = ["domain", "path", "namespace", "name", "tag", "digest", "familiar", "normalized"]


def test_to_json_busybox() -> None:
    j = parse_reference("busybox").to_json()
    assert list(j) == JSON_KEYS
    assert j == {
        "domain": "docker.io",
        "path": "library/busybox",
        "namespace": "library",
        "name": "busybox",
        "tag": None,
        "digest": None,
        "familiar": "busybox",
        "normalized": "docker.io/library/busybox:latest",
    }


def test_to_json_private_registry() -> None:
    s = "registry.example.com:5000/team/app:1.2"
    assert parse_reference(s).to_json() == {
        "domain": "registry.example.com:5000",
        "path": "team/app",
        "namespace": "team",
        "name": "app",
        "tag": "1.2",
        "digest": None,
        "familiar": s,
        "normalized": s,
    }


def test_to_json_legacy_index() -> None:
    assert parse_reference("index.docker.io/team/app:1.2").to_json() == {
        "domain": "docker.io",
        "path": "team/app",
        "namespace": "team",
        "name": "app",
        "tag": "1.2",
        "digest": None,
        "familiar": "team/app:1.2",
        "normalized": "docker.io/team/app:1.2",
    }


def test_to_json_localhost() -> None:
    j = parse_reference("localhost/foo").to_json()
    assert (j["domain"], j["path"], j["namespace"], j["name"]) == ("localhost", "foo", "", "foo")
    assert j["familiar"] == "localhost/foo"
    assert j["normalized"] == "localhost/foo:latest"


def test_to_json_digest_only_gets_no_latest() -> None:
    j = parse_reference("busybox@" + E669).to_json()
    assert j["tag"] is None
    assert j["digest"] == E669
    assert j["familiar"] == "busybox@" + E669
    assert j["normalized"] == "docker.io/library/busybox@" + E669


def test_properties() -> None:
    ref = parse_reference("a/b/c:t")
    assert (ref.namespace, ref.name, ref.repository) == ("a/b", "c", "docker.io/a/b/c")
    assert ref.familiar_name == "a/b/c"
    nested = parse_reference("docker.io/library/foo/bar:1")
    # Only a single component after "library/" is shortened.
    assert nested.familiar == "library/foo/bar:1"
    assert str(Reference("docker.io", "library/x")) == "docker.io/library/x"
    assert Reference("docker.io", "library/x").normalized == "docker.io/library/x:latest"
    assert parse_reference("busybox") == Reference("docker.io", "library/busybox", None, None)


# --- is_full_identifier ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        (HEX64, True),
        (F64, True),
        (HEX64.upper(), False),
        (HEX64[:-1], False),
        (HEX64 + "0", False),
        ("sha256:" + HEX64, False),
        (HEX64 + "\n", False),
        ("", False),
    ],
)
def test_is_full_identifier(s: str, expected: bool) -> None:
    assert is_full_identifier(s) is expected
