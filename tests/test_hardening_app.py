"""Regression tests of issue 24, cause 8 (the app): hostile typed model names and weights are messages, and the
app's two config files (the shipped one the ``vit-explain-studio`` launcher passes on, and the checkout's
``.streamlit/config.toml`` that ``streamlit run app.py`` reads) are the same and hide error details from visitors.
What the browser shows when a page raises is in ``test_browser_errors.py``."""

from __future__ import annotations

import pytest
from conftest import ROOT

pytest.importorskip("streamlit")

import explainers  # noqa: E402
from vit_explain_studio import launch  # noqa: E402
from vit_explain_studio.state import ChoiceError, check_model_choice  # noqa: E402

HOSTILE = [  # (name, weights, words of the message)
    ("~nosuchuser", None, "its user is unknown"),
    ("~nosuchuser/model", None, "its user is unknown"),
    ("deit_tiny_patch16_224", "~nosuchuser/w.pth", "its user is unknown"),
    ("deit\x00tiny", None, "control character"),
    ("/tmp/a\x00b", None, "control character"),
    ("deit_tiny_patch16_224", "w\x00.pth", "control character"),
    ("./" + "a" * 298, None, "operator allowed"),
    ("deit_tiny_patch16_224", "a" * 1000, "operator allowed"),
]


@pytest.mark.parametrize(("name", "weights", "words"), HOSTILE, ids=[f"{i}" for i in range(len(HOSTILE))])
def test_hostile_model_names_and_weights_are_messages(name, weights, words, tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_EXPLAIN_ALLOWED_PATHS", str(tmp_path))
    with pytest.raises(ChoiceError, match=words) as caught:
        check_model_choice(name, weights)
    assert str(ROOT) not in str(caught.value) and "/work" not in str(caught.value)


@pytest.mark.parametrize("name", ["a" * 256, "a" * 300, "owner/" + "b" * 290])
def test_long_names_pass_the_check_without_touching_the_file_system(name, tmp_path, monkeypatch):
    """They raised OSError (file name too long) when the check looked for a local folder of that name; now they
    go on to the loader, which refuses names over 200 characters with a message (test_app.py checks the page)."""
    monkeypatch.setenv("VIT_EXPLAIN_ALLOWED_PATHS", str(tmp_path))
    assert check_model_choice(name) == (name, None)
    with pytest.raises(explainers.ModelLoadError, match="at most 200"):
        explainers.load_model(name)


def test_a_long_path_under_an_allowed_folder_is_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_EXPLAIN_ALLOWED_PATHS", str(tmp_path))
    with pytest.raises(ChoiceError, match="it is too long"):
        check_model_choice(str(tmp_path / ("a" * 280)))
    (tmp_path / "model").mkdir()
    assert check_model_choice(str(tmp_path / "model")) == (str((tmp_path / "model").resolve()), None)
    assert check_model_choice("deit_tiny_patch16_224") == ("deit_tiny_patch16_224", None)


def test_the_two_config_files_are_identical_and_hide_error_details():
    shipped, checkout = launch.CONFIG, ROOT / ".streamlit" / "config.toml"
    assert shipped.read_bytes() == checkout.read_bytes(), \
        "vit_explain_studio/config.toml and .streamlit/config.toml must be the same file: copy one onto the other"
    assert launch._read_toml(shipped)["client"]["showErrorDetails"] == "none"
    assert "--client.showErrorDetails=none" in launch.config_options()


def test_the_catch_all_shows_a_message_and_raises_only_under_the_tests(monkeypatch):
    """``tests/faulty_app.py`` (its Overview page raises) under AppTest: a visitor gets the message and no exception;
    with ``VIT_EXPLAIN_STRICT_ERRORS=1`` (the test suite's setting) the error is raised too, so tests notice it."""
    from streamlit.testing.v1 import AppTest

    from vit_explain_studio import landing

    monkeypatch.setattr(landing, "home_page", landing.home_page)  # the script replaces it: restored afterwards
    monkeypatch.setenv("VIT_EXPLAIN_WEIGHTS", "")  # no model needed: the page fails first
    for strict in ("", "1"):
        monkeypatch.setenv("VIT_EXPLAIN_STRICT_ERRORS", strict)
        at = AppTest.from_file(str(ROOT / "tests" / "faulty_app.py"), default_timeout=300).run()
        assert any("Something went wrong on this page (RuntimeError)" in e.value for e in at.error), \
            [e.value for e in at.error]
        assert not any("secret-config" in e.value for e in at.error)
        assert bool(at.exception) == bool(strict)


@pytest.mark.parametrize("weights", ["a" * 300, "w\x00.pth", "~nosuchuser/w.pth"])
def test_the_library_refuses_unusable_weights_paths_with_a_message(weights):
    with pytest.raises(explainers.ModelLoadError, match="does not exist"):
        explainers.load_model("deit_tiny_patch16_224", weights=weights)
