"""The AWS shared files: ``~/.aws/credentials`` and ``~/.aws/config`` (AWS_SHARED_CREDENTIALS_FILE,
AWS_CONFIG_FILE), as botocore reads them: the credentials file's ``[name]`` section, then the config
file's ``[profile name]`` (``[default]`` for the default profile). A profile holds static keys
(``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``) or a web identity
(``role_arn`` with ``web_identity_token_file``)."""

from __future__ import annotations

import configparser
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from fluxway.adapters.aws_sigv4 import AwsCredentials


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    keys: AwsCredentials | None = None
    role_arn: str | None = None
    web_identity_token_file: str | None = None
    role_session_name: str | None = None


def profile_name(configured: str | None, env: Mapping[str, str]) -> tuple[str, bool]:
    """(the profile to read, whether it was named explicitly)."""
    name = configured or env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE")
    return (name, True) if name else ("default", False)


def _home(env: Mapping[str, str]) -> str:
    return env.get("HOME") or os.path.expanduser("~")


def _read(path: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    with contextlib.suppress(configparser.Error):  # an unreadable file holds no profile (as a missing one)
        parser.read(path, encoding="utf-8")
    return parser


def _section(parser: configparser.RawConfigParser, *names: str) -> dict[str, str] | None:
    for n in names:
        if parser.has_section(n):
            return {k.lower(): v.strip() for k, v in parser.items(n)}
    return None


def load_profile(name: str, env: Mapping[str, str]) -> Profile | None:
    """The named profile from the shared files (blocking file reads), or None if neither has it."""
    home = _home(env)
    creds_path = os.path.expanduser(env.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials"))
    config_path = os.path.expanduser(env.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config"))
    found = False
    merged: dict[str, str] = {}
    config = _section(_read(config_path), f"profile {name}", *(("default",) if name == "default" else ()))
    if config is not None:
        found = True
        merged.update(config)
    creds = _section(_read(creds_path), name)
    if creds is not None:
        found = True
        merged.update(creds)  # the credentials file wins, as in botocore
    if not found:
        return None
    key, secret = merged.get("aws_access_key_id"), merged.get("aws_secret_access_key")
    keys = AwsCredentials(key, secret, merged.get("aws_session_token") or None) if key and secret else None
    return Profile(name, keys, merged.get("role_arn") or None, merged.get("web_identity_token_file") or None,
                   merged.get("role_session_name") or None)
