import re
from pathlib import Path

import pytest

from services.settings import DEFAULT_SECRET_KEY, Environment, Settings

ENV_EXAMPLE = Path(__file__).parents[1] / "deploy" / ".env.example"


def test_the_env_example_documents_every_setting_with_its_default() -> None:
    documented = dict(re.findall(r"^(ROUNDTABLE_\w+)=(.*)$", ENV_EXAMPLE.read_text(encoding="utf-8"), re.M))
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    expected = {f"ROUNDTABLE_{name.upper()}" for name in Settings.model_fields}
    assert set(documented) == expected
    for name in Settings.model_fields:
        value = getattr(defaults, name)
        shown = documented[f"ROUNDTABLE_{name.upper()}"]
        assert shown == ("" if value is None else str(value)), name


def test_production_refuses_the_default_secret() -> None:
    settings = Settings(environment=Environment.production, secret_key=DEFAULT_SECRET_KEY, _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        settings.check_production_ready()
    Settings(environment=Environment.development, _env_file=None).check_production_ready()  # type: ignore[call-arg]


def test_an_unknown_time_zone_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Tiranë'"):
        Settings(timezone="Europe/Tiranë", _env_file=None)  # type: ignore[call-arg]
