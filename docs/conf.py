"""Sphinx settings of the mlops-nb site. Built by `python docs/build.py`, which writes the source tree into _proc/site."""
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_cfg = ConfigParser(delimiters=["="])
_cfg.read(ROOT / "settings.ini", encoding="utf-8")
_s = _cfg["DEFAULT"]

project = _s["title"]
author = _s["author"]
copyright = _s["copyright"]
release = version = _s["version"]

extensions = ["myst_nb", "mlops_xref"]
root_doc = "index"
exclude_patterns = ["**.ipynb_checkpoints"]

# The notebooks were executed by docs/build.py before nbdev's processing; myst-nb only renders them.
nb_execution_mode = "off"
nb_merge_streams = True
nb_output_stderr = "show"
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
# nbdev notebooks put show_doc entries (###) right under the page title (#)
suppress_warnings = ["myst.header"]

html_theme = "furo"
html_title = f"{project} {release}"
html_static_path = [str(Path(__file__).parent / "_static")]
html_css_files = ["mlops.css"]
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None
html_theme_options = {"source_repository": _s["git_url"], "source_branch": _s["branch"], "source_directory": "nbs/"}
