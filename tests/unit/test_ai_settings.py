"""`[ai.models.NAME]` in cronlink.toml: read into the settings, refused with file, key and
problem, and a key written in the file never quoted back."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cronlink.config import load_settings
from cronlink.errors import ConfigError

LITERAL = "sk-proj-literalcanary7731"
SANDBOX = 'base_url = "http://127.0.0.1:8000/v1"\nmodel = "sandbox-model"\n'


def write(tmp_path: Path, body: str, name: str = "fast") -> Path:
    path = tmp_path / "cronlink.toml"
    path.write_text(f"[ai.models.{name}]\n{body}\n")
    return path


def test_a_model_is_read_with_its_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, SANDBOX + 'api_key = "${SANDBOX_MODEL_KEY}"\ninput_price = 0.15')
    [(name, model)] = load_settings(path).ai.models.items()
    assert name == "fast"
    assert (model.base_url, model.model, model.api_key) == (
        "http://127.0.0.1:8000/v1", "sandbox-model", "${SANDBOX_MODEL_KEY}",
    )  # fmt: skip
    assert (model.protocol, model.timeout, model.max_output_tokens) == (
        "openai", timedelta(seconds=60), 1024,
    )  # fmt: skip
    assert (model.input_price, model.output_price, model.rpm, model.tpm, model.budget_usd) == (
        0.15, 0.0, None, None, None,
    )  # fmt: skip
    assert LITERAL not in repr(model)


def test_every_field_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, (
        'base_url = "https://api.openai.com/v1/"\nmodel = "gpt-4o-mini"\n'
        'api_key = "${OPENAI_API_KEY}"\nprotocol = "openai"\ntimeout = "2m"\n'
        "max_output_tokens = 300\ninput_price = 0.15\noutput_price = 0.6\nrpm = 500\n"
        "tpm = 200000\nbudget_usd = 25"
    ), name="gpt-mini")  # fmt: skip
    model = load_settings(path).ai.models["gpt-mini"]
    assert model.base_url == "https://api.openai.com/v1"
    assert (model.timeout, model.max_output_tokens, model.rpm, model.tpm) == (
        timedelta(minutes=2), 300, 500, 200_000,
    )  # fmt: skip
    assert (model.output_price, model.budget_usd) == (0.6, 25.0)


def test_no_section_means_no_models(tmp_path: Path) -> None:
    path = tmp_path / "cronlink.toml"
    path.write_text("")
    assert load_settings(path).ai.models == {}


@pytest.mark.parametrize(
    "key", [LITERAL, f"{LITERAL}${{OPENAI_API_KEY}}", f"${{OPENAI_API_KEY:-{LITERAL}}}", ""]
)
def test_a_key_written_in_the_file_is_refused_naming_the_key_not_quoting_it(
    tmp_path: Path, key: str
) -> None:
    path = write(tmp_path, SANDBOX + f'api_key = "{key}"')
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ai.models.fast.api_key: must name an environment")
    assert "${OPENAI_API_KEY}" in message
    assert LITERAL not in message


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (SANDBOX, "ai.models.fast.api_key: required key is missing"),
        ('model = "m"\napi_key = "${K}"', "ai.models.fast.base_url: required key is missing"),
        (
            'base_url = "ftp://h/v1"\nmodel = "m"\napi_key = "${K}"',
            "ai.models.fast.base_url: 'ftp://h/v1' is not a base URL",
        ),
        (
            'base_url = "api.openai.com/v1"\nmodel = "m"\napi_key = "${K}"',
            "ai.models.fast.base_url: 'api.openai.com/v1' is not a base URL",
        ),
        (
            'base_url = "https://u:p@h/v1"\nmodel = "m"\napi_key = "${K}"',
            "ai.models.fast.base_url: give the base URL alone",
        ),
        (
            SANDBOX + 'api_key = "${K}"\nprotocol = "anthropic"',
            "ai.models.fast.protocol: Input should be 'openai'",
        ),
        (SANDBOX + 'api_key = "${K}"\ntimeout = "soon"', "ai.models.fast.timeout: 'soon' is not"),
        (SANDBOX + 'api_key = "${K}"\ntimeout = "0s"', "ai.models.fast.timeout: 0s is too short"),
        (SANDBOX + 'api_key = "${K}"\ntimeout = "2h"', "ai.models.fast.timeout: 2h is too long"),
        (
            SANDBOX + 'api_key = "${K}"\nmax_output_tokens = 0',
            "ai.models.fast.max_output_tokens: Input should be greater than or equal to 1",
        ),
        (
            SANDBOX + 'api_key = "${K}"\ninput_price = -1',
            "ai.models.fast.input_price: Input should be greater than or equal to 0",
        ),
        (SANDBOX + 'api_key = "${K}"\nrpm = 0', "ai.models.fast.rpm: Input should be greater"),
        (
            SANDBOX + 'api_key = "${K}"\nbudget_usd = 0',
            "ai.models.fast.budget_usd: Input should be greater than 0",
        ),
        (SANDBOX + 'api_key = "${K}"\ntemperature = 1', "ai.models.fast.temperature: unknown key"),
    ],
)
def test_bad_models_name_the_file_the_key_and_the_problem(
    tmp_path: Path, body: str, problem: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert str(raised.value).startswith(f"{path}: {problem}")


def test_a_bad_model_name_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, SANDBOX + 'api_key = "${K}"', name='"has space"')
    with pytest.raises(ConfigError, match=r"ai\.models\.has space\.\[key\]: String should match"):
        load_settings(path)
