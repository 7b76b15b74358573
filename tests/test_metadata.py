"""The repository's front matter: a licence, and a citation whose version is the package's."""

import tomllib

from conftest import REPO, load_yaml


def test_citation_names_the_package_and_its_version():
    citation = load_yaml(REPO / "CITATION.cff")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert citation["cff-version"] == "1.2.0"
    assert citation["title"] == project["name"]
    assert citation["version"] == project["version"], "CITATION.cff and pyproject.toml disagree on the version"
    assert citation["authors"] == [{"name": "aedissect developers"}]
    assert citation["license"] == "MIT"


def test_licence_is_mit():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "aedissect developers" in text
