from __future__ import annotations

from pathlib import Path

import pytest

from stream.cli.main import main
from stream.settings import Settings


def test_defaults_match_the_documented_topology() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert (settings.input_topic, settings.output_topic, settings.dlq_topic) == (
        "user-events",
        "segment-changes",
        "user-events.dlq",
    )
    assert settings.http_port == 8080 and settings.group == "segstream"


def test_environment_overrides_a_toml_file_which_overrides_defaults(tmp_path: Path) -> None:
    config = tmp_path / "segstream.toml"
    config.write_text('max_batch_records = 500\ninput_topic = "from-file"\n')
    settings = Settings.from_env(
        {"SEGSTREAM_CONFIG": str(config), "SEGSTREAM_INPUT_TOPIC": "from-env"}
    )
    assert settings.max_batch_records == 500 and settings.input_topic == "from-env"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SEGSTREAM_HTTP_PORT": "eighty"}, "SEGSTREAM_HTTP_PORT='eighty' is not a valid int"),
        ({"SEGSTREAM_SEGMENTS": "0"}, "segments must be at least 1"),
        ({"SEGSTREAM_TRAIN_SAMPLE_PERMILLE": "2000"}, "between 0 and 1000"),
        ({"SEGSTREAM_REDIS_BUCKETS": "0"}, "redis_buckets must be at least 1"),
    ],
)
def test_bad_values_fail_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_unknown_keys_in_the_file_are_an_error(tmp_path: Path) -> None:
    config = tmp_path / "segstream.toml"
    config.write_text("max_batch_recrods = 5\n")
    with pytest.raises(ValueError, match="max_batch_recrods"):
        Settings.from_env({"SEGSTREAM_CONFIG": str(config)})


def test_help_lists_every_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "SEGSTREAM_KAFKA_BOOTSTRAP" in out and "SEGSTREAM_REDIS_BUCKETS" in out


def test_cli_refuses_bad_settings_with_status_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SEGSTREAM_SEGMENTS", "many")
    assert main(["serve"]) == 2
    assert "SEGSTREAM_SEGMENTS" in capsys.readouterr().err


def test_a_secret_comes_from_its_file_and_never_shows(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    settings = Settings.from_env({"SEGSTREAM_API_TOKEN_FILE": str(secret)})
    assert settings.api_token == "from-a-file"
    assert "from-a-file" not in repr(settings)
    # The variable itself wins over the file, as every variable wins over the TOML file.
    both = {"SEGSTREAM_API_TOKEN": "direct", "SEGSTREAM_API_TOKEN_FILE": str(secret)}
    assert Settings.from_env(both).api_token == "direct"
    # Only secrets read files: another setting's _FILE variable means nothing.
    assert Settings.from_env({"SEGSTREAM_GROUP_FILE": str(secret)}).group == "segstream"
