"""Packaging beyond pyproject.toml: configs/ (the Hydra config tree, edited where it is)
installs as the package data snpbag/configs/, so a wheel composes configs without a
checkout (snpbag.config.config_dir)."""

from setuptools import find_namespace_packages, find_packages, setup

CONFIG_GROUPS = [f"snpbag.configs.{p}" for p in find_namespace_packages(where="configs")]

setup(
    packages=[*find_packages(include=["snpbag*"]), "snpbag.configs", *CONFIG_GROUPS],
    package_dir={"snpbag.configs": "configs"},
    package_data={p: ["*.yaml"] for p in ["snpbag.configs", *CONFIG_GROUPS]},
)
