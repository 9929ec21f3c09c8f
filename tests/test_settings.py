import re
from pathlib import Path

import pytest

from services.settings import DEFAULT_SECRET_KEY, Environment, NotProductionReady, Settings

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


STRONG = "Qm3v9-Zr7kT_x2LpW8sN4bY6cF1hJ5dG0aE"


@pytest.mark.parametrize(
    ("secret", "said"),
    [
        (DEFAULT_SECRET_KEY, "is the well-known default"),
        ("short-but-random-Xy7", "is shorter than 32 characters"),
        ("a" * 32, "fewer than 10 different characters"),
        ("abab" * 16, "fewer than 10 different characters"),
    ],
)
def test_production_refuses_a_default_short_or_weak_secret(secret: str, said: str) -> None:
    settings = Settings(
        environment=Environment.production,
        secret_key=secret,
        public_base_url="https://consultations.gov.example",
        _env_file=None,  # type: ignore[call-arg]
    )
    with pytest.raises(NotProductionReady, match=said) as refused:
        settings.check_production_ready()
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "ready"),
    [
        ("https://consultations.gov.example", True),
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
        ("http://consultations.gov.example", False),
        ("http://10.0.0.5:8000", False),
        ("ftp://consultations.gov.example", False),
        ("consultations.gov.example", False),
    ],
)
def test_production_refuses_a_public_address_over_plain_http(url: str, ready: bool) -> None:
    settings = Settings(
        environment=Environment.production,
        secret_key=STRONG,
        public_base_url=url,
        _env_file=None,  # type: ignore[call-arg]
    )
    if ready:
        settings.check_production_ready()
    else:
        with pytest.raises(NotProductionReady, match="ROUNDTABLE_PUBLIC_BASE_URL"):
            settings.check_production_ready()
    # Outside production, anything goes.
    settings.model_copy(update={"environment": Environment.development}).check_production_ready()


def test_trusted_proxies_are_addresses_or_networks() -> None:
    settings = Settings(trusted_proxies="10.0.0.5, 192.168.0.0/24,2001:db8::/32", _env_file=None)  # type: ignore[call-arg]
    assert [str(network) for network in settings.trusted_networks] == [
        "10.0.0.5/32",
        "192.168.0.0/24",
        "2001:db8::/32",
    ]
    with pytest.raises(ValueError, match=r"'proxy\.example' is not an IP address or network"):
        Settings(trusted_proxies="proxy.example", _env_file=None)  # type: ignore[call-arg]
