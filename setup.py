"""Builds fhir-bridge; the modules on the validation and write paths are compiled with mypyc.

mypyc turns type-annotated modules into C extensions from the same source, which mypy checks:
validation runs about 1.6x as fast (bench/validate_bench.py). The list is pyproject.toml's
[tool.fhir-bridge] compiled. FHIR_BRIDGE_PURE_PYTHON=1 installs without compiling (to profile
line by line); `./dev build` compiles again after an edit (`./dev test` and `./dev serve` do it
when a source is newer than its build).
"""

import os
import tomllib

from setuptools import setup

with open("pyproject.toml", "rb") as f:
    COMPILED = tomllib.load(f)["tool"]["fhir-bridge"]["compiled"]

if os.environ.get("FHIR_BRIDGE_PURE_PYTHON"):
    setup()
else:
    from mypyc.build import mypycify

    # The build checks types again without the project's mypy settings (`./dev lint` applies
    # them, strict): where the installed packages' types are absent, their values are Any.
    options = ["--config-file=", "--ignore-missing-imports"]
    setup(ext_modules=mypycify([*options, *COMPILED], opt_level="3", group_name="fhir_bridge"))
