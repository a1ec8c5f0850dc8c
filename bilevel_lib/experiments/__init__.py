"""Layer 6, experiments: recipes shared by chapters, tests and benchmarks, the BLORC experiments,
the authors' random start (Julia's generator), profiling, the hypergradient frontier sweep
(``frontier``), the results store (``store``: one format and one place for every saved result) and
the command line (``cli``, ``python -m bilevel_lib``), the recipes of Ch. "Other losses and
inpainting" (``beyond_mse``), the whole-image test of the learned regularisers (``full_image``),
MAID against HOAG at a larger scale (``maid_hoag``) and case (c) of Ch. "Case studies", denoising
vs deblurring (``deblurring``).
"""

from . import beyond_mse, blorc, deblurring, frontier, full_image, maid_hoag, store
from .beyond_mse import TEST_PATCHES, inpainting_case, loss_comparison, scores
from .full_image import full_image_case
from .julia_random import JuliaXoshiro, ZigguratTables, ziggurat_tables
from .profiling import Measurement, format_bytes, measure
from .recipes import angle_error_vs_tolerance, cameraman_case, two_tap_problem, vertical_bars_case, vertical_bars_draws
from .store import load_result, save_result

__all__ = [
    "TEST_PATCHES",
    "JuliaXoshiro",
    "Measurement",
    "ZigguratTables",
    "angle_error_vs_tolerance",
    "cameraman_case",
    "format_bytes",
    "full_image_case",
    "inpainting_case",
    "loss_comparison",
    "measure",
    "scores",
    "two_tap_problem",
    "vertical_bars_case",
    "vertical_bars_draws",
    "ziggurat_tables",
    "recipes",
    "julia_random",
    "profiling",
    "blorc",
    "frontier",
    "beyond_mse",
    "deblurring",
    "full_image",
    "maid_hoag",
    "store",
    "load_result",
    "save_result",
]
