"""Sphinx configuration: ``make -C docs html`` (warnings are errors) builds the site into ``docs/_build/html``.

Nothing here needs the network: MathJax is served from the site (``sphinx-mathjax-offline``) and the
intersphinx links to PyTorch/TorchRL/TensorDict are used only when their inventories can be reached
(probed once, a few seconds at most); offline, those names are printed as plain code.
"""
from __future__ import annotations

import os
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor

import torchrl_rgm

project = "torchrl_rgm"
author = "the torchrl_rgm developers"
copyright = "2026, the torchrl_rgm developers"
release = version = torchrl_rgm.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/mathjax: equations render without the network
    "myst_parser",  # the Results and Design notes pages are Markdown (moved from the README as they were)
]
myst_heading_anchors = 3  # "#the-deciding-grid..." links inside a page resolve as on GitHub

exclude_patterns = ["_build", "README.md", "tutorials/README.rst", "**.ipynb_checkpoints"]  # README.md: for the repository
templates_path = []
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_favicon = "_static/favicon.svg"
html_logo = "_static/favicon.svg"
html_title = f"torchrl_rgm {release}"
html_theme = "pydata_sphinx_theme"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
}
html_sidebars = {"index": [], "install": []}
html_context = {"default_mode": "auto"}  # unset, the theme logs "invalid theme mode" to the console
html_show_sourcelink = True

# autodoc: the signatures and docstrings as written (the equations are in the docstrings).
autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource",
                           "exclude-members": "default_keys"}  # TorchRL's alias of _AcceptedKeys, on every loss
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = False
autodoc_inherit_docstrings = False  # gymnasium's own docstrings (RobomimicEnv.step, ...) are not ours to render
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [("Keyword Args", "params_style")]

# intersphinx: only the inventories that answer (offline builds stay warning-free).
INVENTORIES = {
    "python": "https://docs.python.org/3/",
    "torch": "https://docs.pytorch.org/docs/stable/",
    "torchrl": "https://docs.pytorch.org/rl/stable/",
    "tensordict": "https://docs.pytorch.org/tensordict/stable/",
}


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "objects.inv", timeout=3) as response:
            return response.status == 200
    except Exception:  # offline, DNS failure, refused, timeout: no links, no warning
        return False


if os.environ.get("TORCHRL_RGM_DOCS_OFFLINE") == "1":
    reachable = {}
else:
    with ThreadPoolExecutor(len(INVENTORIES)) as pool:
        reachable = dict(zip(INVENTORIES, pool.map(_answers, INVENTORIES.values())))
intersphinx_mapping = {k: (url, None) for k, url in INVENTORIES.items() if reachable.get(k)}
if len(intersphinx_mapping) < len(INVENTORIES):
    print(f"intersphinx: {sorted(set(INVENTORIES) - set(intersphinx_mapping))} unreachable, "
          "their names are printed without links")

# sphinx-gallery: every tutorial runs at build time; one that fails fails the build.
sphinx_gallery_conf = {
    "examples_dirs": ["tutorials"],
    "gallery_dirs": ["auto_tutorials"],
    "filename_pattern": r"/\d\d_",
    "ignore_pattern": r"/_",
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "show_memory": False,
    "capture_repr": ("_repr_html_", "__repr__"),
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "reference_url": {"torchrl_rgm": None},
    "doc_module": ("torchrl_rgm",),
    "backreferences_dir": None,
    "promote_jupyter_magic": False,
}

# The tutorials run in this process: their progress bars (tqdm, on stderr) would fill the pages.
os.environ["TQDM_DISABLE"] = "1"

# Third-party noise that is not about this site: keep -W for our own warnings.
warnings.filterwarnings("ignore", message=".*torch.jit.script_method.*", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning, module="gymnasium")
