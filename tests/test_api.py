"""The Python API's names: ``autopeft.search`` and ``autopeft.load`` are its functions whatever a
user (or the bench) imported before. (They were shadowed once: a subpackage named ``search``
replaced the function on the package as soon as it was imported.)"""

from __future__ import annotations

import importlib
import pkgutil

import autopeft


def test_search_and_load_stay_functions_after_every_module_is_imported() -> None:
    for module in pkgutil.walk_packages(autopeft.__path__, "autopeft."):
        if module.name != "autopeft.cli.__main__":
            importlib.import_module(module.name)
    from autopeft import api

    assert autopeft.search is api.search and autopeft.load is api.load
    assert callable(autopeft.search) and callable(autopeft.load)
