"""Registry flags shared by build --push, validate by digest, promote registry-side and verify."""

from __future__ import annotations

import argparse
from pathlib import Path

from envkit.errors import UsageError
from envkit.registry import RegistrySettings, parse_root


def add_registry_arguments(parser: argparse.ArgumentParser, *, ca_alias: bool = False) -> None:
    """--registry-ca-bundle (also --ca-bundle where pip's CA flag does not claim it) and
    --insecure-registry; credentials come from the Docker config (DOCKER_CONFIG or ~/.docker)."""
    names = ["--registry-ca-bundle", "--ca-bundle"] if ca_alias else ["--registry-ca-bundle"]
    parser.add_argument(
        *names,
        dest="registry_ca_bundle",
        type=Path,
        metavar="FILE",
        help="CA bundle that signed the registry TLS certificate (default: system store)",
    )
    parser.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST",
        help="allow plain HTTP to this registry host (loopback hosts always may)",
    )


def registry_settings(args: argparse.Namespace) -> RegistrySettings:
    """RegistrySettings from the shared flags; a CA bundle that is not a file is a usage error."""
    bundle = args.registry_ca_bundle
    if bundle is not None and not bundle.is_file():
        raise UsageError(f"--registry-ca-bundle {bundle}: not a readable file")
    return RegistrySettings(ca_bundle=bundle, insecure=tuple(args.insecure_registry))


def repository_under(root: str, repository: str, flag: str) -> tuple[str, str]:
    """(host, repository path) for `root` = host[:port][/prefix] and the matrix's bare repository."""
    host, prefix = parse_root(root, flag)
    return host, f"{prefix}/{repository}" if prefix else repository
