"""The Elasticsearch connection is read once from PULSE_ES_* (secrets also from *_FILE files) and never shows a
secret: not in its display, its repr, nor in the one-line error of a command that cannot reach the node."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pulse.connect.elasticsearch import EsConnection
from pulse.errors import PulseError
from tests.cli_helpers import one_line_error, run_pulse

LOCAL = "http://127.0.0.1:9200"


def test_credentials_written_into_the_url_become_basic_auth_and_are_never_shown() -> None:
    es = EsConnection.from_env({"PULSE_ES_URL": "https://pulse:p%40ss-w0rd@es1:9200, https://es2:9200"}, LOCAL)
    assert es.hosts == ("https://es1:9200", "https://es2:9200")
    assert es.username == "pulse" and es.password is not None and es.password.reveal() == "p@ss-w0rd"
    assert "w0rd" not in es.display + repr(es) + str(es) + f"{es.password}"


def test_secrets_come_from_files_and_an_api_key_excludes_a_password(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("abc123==\n")
    es = EsConnection.from_env({"PULSE_ES_API_KEY_FILE": str(key), "PULSE_ES_CA_CERT": "/ca.pem",
                                "PULSE_ES_VERIFY_CERTS": "false"}, LOCAL)
    assert es.api_key is not None and es.api_key.reveal() == "abc123=="
    assert (es.hosts, es.ca_certs, es.verify_certs) == ((LOCAL,), "/ca.pem", False)
    with pytest.raises(PulseError, match="either a user and password or an API key"):
        EsConnection.from_env({"PULSE_ES_API_KEY": "k", "PULSE_ES_PASSWORD": "p", "PULSE_ES_USERNAME": "u"}, LOCAL)
    with pytest.raises(PulseError, match="not both"):
        EsConnection.from_env({"PULSE_ES_PASSWORD": "p", "PULSE_ES_PASSWORD_FILE": str(key)}, LOCAL)
    with pytest.raises(PulseError, match="cannot read"):
        EsConnection.from_env({"PULSE_ES_PASSWORD_FILE": str(tmp_path / "missing")}, LOCAL)


def test_a_cloud_id_is_shown_by_its_name_only() -> None:
    es = EsConnection.from_env({"PULSE_ES_CLOUD_ID": "prod:ZXUtd2VzdC0xLmF3cy5mb3VuZC5pbyRhYmMkZGVm",
                                "PULSE_ES_API_KEY": "k"}, LOCAL)
    assert es.hosts == () and es.display == "cloud id prod"


def test_the_real_node_answers_through_the_connection(es_url: str) -> None:
    assert EsConnection.from_env({"PULSE_ES_URL": es_url}, LOCAL).status() in {"green", "yellow"}


def test_an_unreachable_node_is_one_line_without_the_password() -> None:
    env = {"PULSE_ES_URL": "http://pulse:s3cr3t-pw@127.0.0.1:9"}  # nothing listens on port 9
    done = run_pulse("verify", "--topic", "no-such-topic", env=dict(os.environ) | env)
    line = one_line_error(done)
    assert "Elasticsearch is not reachable at http://127.0.0.1:9" in line
    assert "s3cr3t" not in done.stdout + done.stderr
