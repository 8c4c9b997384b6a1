"""Dask worker preload: load Intel's OpenMP runtime (from the intel-openmp wheel) at start-up,
as a site preload or a plugin would on one node of a real cluster."""

import ctypes
import os

ctypes.CDLL(os.environ["NUMDOCTOR_TEST_LIBIOMP"], mode=os.RTLD_GLOBAL)
