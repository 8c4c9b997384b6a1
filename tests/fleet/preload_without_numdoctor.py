"""Dask worker preload: make numdoctor unimportable, as on a worker whose environment lacks
it."""

import sys


class _WithoutNumdoctor:
    def find_spec(self, name, path=None, target=None):
        if name == "numdoctor" or name.startswith("numdoctor."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _WithoutNumdoctor())
