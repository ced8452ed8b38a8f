"""Build the mlops-nb documentation site, offline, from the notebooks as they are; and generate README.md.

    python docs/build.py            # the whole site -> _docs/index.html (warnings are errors)
    python docs/build.py readme     # write README.md from nbs/index.ipynb
    python docs/build.py readme --check   # fail if README.md is not what nbs/index.ipynb gives

How the site is made (see docs/README.md for why):

1. execute: a copy of every notebook in nbs/ (numbered ones, index, tutorials, architecture) is executed with
   nbclient in a scratch folder, two at a time, so lesson-cell outputs (tables, plots) exist; hidden cells run too.
   Cells that call `nbdev_export()` and cells flagged with settings.ini's `tst_flags` (notest, slow) or
   `#| eval: false` are not run, exactly as nbdev's test runner skips them. The runbooks are shown as source.
2. nbdev: the executed copies go through nbdev's own docs processors (`nbdev.processors.FilterDefaults`, what
   `nbdev_proc_nbs`/`nbdev_preview` use before Quarto): `#| hide` and export cells are dropped, `show_doc` cells are
   added after exported definitions and executed, the title cell becomes front matter.
3. Quarto's part, done here: front matter becomes the page title, `#| echo: false`/`output: false`/`include: false`
   are applied, `show_doc`'s `output: asis` markdown becomes page markdown with a target per documented symbol,
   every remaining `#|` line is removed, links to notebooks follow the pages' names.
4. Sphinx + myst-nb (no execution) + furo render it to static HTML with search; docs/mlops_xref.py links backticked
   exported names to their `show_doc` entries; the CLI reference is written from `mlops_nb.cli.parser()`.
5. Every local link, anchor and image of the result is checked.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from html.parser import HTMLParser
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NBS = ROOT / "nbs"
RUNBOOKS = ROOT / "mlops_nb" / "runbooks"
PROC = ROOT / "_proc"  # nbdev's folder for processed notebooks; the Sphinx source tree is built here
SRC = PROC / "site"
OUT = ROOT / "_docs"  # settings.ini doc_path
RECORD = PROC / "executed.json"  # what the last complete build was made from and executed (tests/test_notebooks.py reads it)
README = ROOT / "README.md"
README_NOTE = "<!-- Generated from nbs/index.ipynb by `python docs/build.py readme`: edit the notebook, not this file. -->\n\n"
SKIP_DIRS = re.compile(r"^[_.]")


# ---------------------------------------------------------------- which notebooks become which pages

def _page_name(path:Path)->str:
    "nbdev's output name: `05_evaluate.ipynb` -> `evaluate` (what `_modidx` and Quarto use)."
    from nbdev.doclinks import _nbpath2html
    return _nbpath2html(Path(path.name)).stem


def sources()->list[tuple[Path, str, bool]]:
    "(notebook, docname, execute?) for every page made from a notebook, in the navigation's order."
    nbs = [p for p in sorted(NBS.rglob("*.ipynb")) if not any(SKIP_DIRS.match(part) for part in p.relative_to(NBS).parts)]
    res = []
    for p in nbs:
        rel = p.relative_to(NBS)
        res.append((p, str(rel.parent / _page_name(p)) if rel.parent != Path(".") else _page_name(p), True))
    res += [(p, f"runbooks/{p.stem}", False) for p in sorted(RUNBOOKS.glob("*.ipynb"))]
    return res


def numbered(srcs):
    return [d for p, d, _ in srcs if p.parent == NBS and p.name[0].isdigit()]


# ---------------------------------------------------------------- 1. execute a copy

def _skip_flags()->set[str]:
    from nbdev.config import get_config
    return set(get_config().get("tst_flags", "").split())


def _directives(source:str)->dict:
    "The leading `#| name args` lines of a code cell."
    res = {}
    for line in source.splitlines():
        if not line.strip(): continue
        m = re.match(r"\s*#\|\s*([\w-]+):?\s*(.*)$", line)
        if not m: break
        res[m.group(1)] = m.group(2).strip()
    return res


def skipped(source:str, flags:set[str])->bool:
    "Is this code cell left unexecuted, as nbdev's test runner leaves it (an `nbdev_export()` call, a `tst_flags` flag, `eval: false`)?"
    d = _directives(source)
    return "nbdev_export(" in source or bool(flags & d.keys()) or d.get("eval", "").lower() == "false"


def _with_show_docs(path:Path)->str:
    "The notebook with nbdev's `show_doc` cells added after exported definitions, so that the kernel renders them."
    from execnb.nbio import mk_cell, nb2str, read_nb
    from nbdev.process import NBProcessor
    from nbdev.processors import add_show_docs
    nb = read_nb(path)
    NBProcessor(nb=nb, procs=[add_show_docs], rm_directives=False).process()
    if any(getattr(c, "has_sd", False) for c in nb.cells):
        nb.cells.insert(0, mk_cell("#| hide\nimport sys\nfrom functools import partial\nfrom nbdev.showdoc import show_doc\n"
                                   f"sys.path.insert(0, {str(DOCS)!r})\nfrom showdoc_table import SignatureAndTable\n"
                                   "show_doc = partial(show_doc, renderer=SignatureAndTable)"))
    for c in nb.cells:
        for k in [k for k in c if k.endswith("_") or k == "has_sd"]: del c[k]
    return nb2str(nb)


def execute(path:Path, dest:Path, flags:set[str], workdir:Path)->float:
    "Execute a copy of the notebook at `path` into `dest`, in `workdir`; returns the seconds it took."
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.reads(_with_show_docs(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and skipped(cell.source, flags): cell.metadata.setdefault("tags", []).append("skip-execution")
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(workdir / "kernel.log", "w") as log:  # the kernel's own warnings, not the notebook's stderr
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute(stderr=log)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "skip-execution" in tags: tags.remove("skip-execution")
        if "tags" in cell.metadata and not tags: del cell.metadata["tags"]
    nbformat.write(nb, dest)
    return time.time() - start


# ---------------------------------------------------------------- 2. nbdev's processing, 3. Quarto's part

def _filter():
    """nbdev's docs processors without `exec_show_docs` and `add_links`.

    The kernel already rendered every `show_doc` (see `_with_show_docs`): `exec_show_docs` would re-run only the import,
    export and show_doc cells in a second shell, which breaks on a lesson cell that mixes an import with code using
    earlier results (nbdev's FAQ warns about it; 01_data has one). `add_links` writes absolute links to the hosted
    site; docs/mlops_xref.py links names within this site instead."""
    from nbdev.processors import FilterDefaults, add_links, exec_show_docs

    class OfflineFilter(FilterDefaults):
        def base_procs(self): return [p for p in super().base_procs() if p not in (add_links, exec_show_docs)]
    return OfflineFilter()


def _symbols()->dict[str, str]:
    "Exported name -> fully qualified name, from nbdev's `_modidx` (public names; unique short names only)."
    from mlops_nb._modidx import d
    full = [s for mod in d["syms"].values() for s in mod if not any(part.startswith("_") for part in s.split("."))]
    res, seen = {}, {}
    for s in full:
        qual = s.split(".", 2)[2]
        seen.setdefault(qual, []).append(s)
        res[s] = s
    res.update({q: v[0] for q, v in seen.items() if len(v) == 1})
    return res


def label(full:str)->str: return "api-" + full.lower().replace("_", "-").replace(".", "-")


_re_show_doc = re.compile(r"^\s*show_doc\(\s*([\w.]+)")


def _md_output(cell)->str|None:
    for o in cell.get("outputs", []):
        data = o.get("data", {})
        if "text/markdown" in data:
            v = data["text/markdown"]
            return "".join(v) if isinstance(v, list) else v
    return None


def _rewrite_links(text:str, src:Path, docname:str, pages:dict[str, str])->str:
    "Relative links to notebooks -> links to their pages (`05_evaluate.ipynb` is the page `evaluate`)."
    def repl(m):
        target, anchor = m.group(2), m.group(3) or ""
        dest = (src.parent / target).resolve()
        if str(dest) not in pages: return m.group(0)
        rel = posixpath.relpath(pages[str(dest)], posixpath.dirname(docname) or ".")
        return f"{m.group(1)}({rel}.ipynb{anchor})"
    return re.sub(r"(\[[^\]]*\])\(([^)\s#:]+\.ipynb)(#[^)]*)?\)", repl, text)


def quarto_part(nb, src:Path, docname:str, pages:dict[str, str], symbols:dict[str, str], module:str|None)->dict:
    "Do what Quarto does with nbdev's processed notebook; returns {full symbol name: label} documented on the page."
    from execnb.nbio import mk_cell
    documented, cells = {}, []
    for cell in nb.cells:
        if cell.cell_type == "raw" and cell.source.lstrip().startswith("---"):
            import yaml
            fm = yaml.safe_load(cell.source.strip().strip("-")) or {}
            text = f"# {fm['title']}" if "title" in fm else ""
            if fm.get("description"): text += f"\n\n{fm['description']}"
            if text: cells.append(mk_cell(text, "markdown"))
            continue
        if cell.cell_type == "markdown":
            cell.source = _rewrite_links(cell.source, src, docname, pages)
            cells.append(cell)
            continue
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        opts = _directives(cell.source)
        cell.source = "\n".join(line for line in cell.source.splitlines() if not re.match(r"\s*#\|", line)).strip("\n")
        if opts.get("include") == "false": continue
        md = _md_output(cell)
        if opts.get("output") == "asis" and md is not None:
            # show_doc: its markdown goes into the page, after a target for cross-references
            m = _re_show_doc.match(cell.source)
            if m:
                name = m.group(1)
                full = symbols.get(f"mlops_nb.{module}.{name}") if module else None
                full = full or symbols.get(name)
                if full and full not in documented:
                    target = label(full)  # names differing only in case (a class and its function) get a numbered second target
                    taken, n = set(documented.values()), 2
                    while target in taken and f"{target}-{n}" in taken: n += 1
                    if target in taken: target = f"{target}-{n}"
                    documented[full] = target
                    md = re.sub(r"^(#+ )", f"({target})=\n\\1", md, count=1, flags=re.MULTILINE)
            md = re.sub(r"^---\s*\n", "", md.lstrip(), count=1)  # the rule before each entry: a CSS border instead
            cells.append(mk_cell(md, "markdown"))
            continue
        tags = cell.metadata.setdefault("tags", [])
        if opts.get("echo") == "false": tags.append("remove-input")
        if opts.get("output") == "false": tags.append("remove-output")
        if not tags: del cell.metadata["tags"]
        cells.append(cell)
    nb.cells = cells
    return documented


def build_page(src:Path, docname:str, run:bool, flags:set[str], pages:dict[str, str], symbols:dict[str, str])->tuple[str, dict, float]:
    "Execute (a copy of), process and post-process one notebook into SRC/docname.ipynb."
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from execnb.nbio import read_nb, write_nb
    from nbdev.processors import _default_exp
    executed = PROC / "executed" / f"{docname}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    seconds = 0.0
    if run:
        try: seconds = execute(src, executed, flags, PROC / "work" / docname)
        except Exception as e:  # noqa: BLE001 - any failure of a cell: name the notebook, keep nbclient's account of the cell
            raise RuntimeError(f"{src.relative_to(ROOT)} failed while the site was built:\n{e}") from None
    else: shutil.copy2(src, executed)
    nb = read_nb(executed)
    nb.path_ = str(src)  # nbdev names the page after the source notebook
    module = _default_exp(nb)
    os.environ["IN_TEST"] = "1"
    try: _filter()(nb)
    finally: del os.environ["IN_TEST"]
    documented = quarto_part(nb, src, docname, pages, symbols, module)
    dest = SRC / f"{docname}.ipynb"
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dest)
    return docname, documented, seconds


# ---------------------------------------------------------------- generated pages

def cli_reference()->str:
    "The CLI reference page, from the real argument parser."
    os.environ["COLUMNS"] = "100"
    from mlops_nb.cli import parser
    p = parser()
    sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
    out = ["# Command line reference", "",
           ("Generated from `mlops_nb.cli.parser()` when the site is built: this is what `mlops-nb --help` and "
            "`mlops-nb COMMAND --help` print. The commands are implemented in the [command line notebook](cli.ipynb)."),
           "", "```text", p.format_help().rstrip(), "```", ""]
    for name, s in sub.choices.items():
        out += [f"## mlops-nb {name}", "", f"```text\n{s.format_help().rstrip()}\n```", ""]
    return "\n".join(out)


def index_toctree(srcs, has_cli:bool)->str:
    "The navigation, appended to the home page."
    def tree(caption, docs):
        return "\n".join(["```{toctree}", ":hidden:", f":caption: {caption}", "", *docs, "```", ""])
    docs = [d for _, d, _ in srcs]
    tutorials = [d for d in docs if d.startswith("tutorials/")]
    other = [d for d in docs if "/" not in d and d != "index" and d not in numbered(srcs)]
    return "\n".join([tree("Learn", tutorials + other), tree("Library notebooks", numbered(srcs)),
                      tree("Runbooks", [d for d in docs if d.startswith("runbooks/")]),
                      tree("Reference", ["cli_reference"] if has_cli else [])])


# ---------------------------------------------------------------- 5. check the result

class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.refs = set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("id", "name"):
            if a.get(k): self.ids.add(a[k])
        if tag == "a" and a.get("href"): self.refs.append(("link", a["href"]))
        if tag in ("img", "script") and a.get("src"): self.refs.append(("image" if tag == "img" else "script", a["src"]))
        if tag == "link" and a.get("href"): self.refs.append(("stylesheet", a["href"]))


def check_site(out:Path)->list[str]:
    "Broken local links, anchors and images in the built site."
    pages = {}
    for f in out.rglob("*.html"):
        p = _Links()
        p.feed(f.read_text(encoding="utf-8"))
        pages[f] = p
    errors = []
    for f, p in pages.items():
        for kind, ref in p.refs:
            u = urlsplit(ref)
            if u.scheme or u.netloc or ref.startswith(("mailto:", "data:", "javascript:")): continue
            target = (f.parent / unquote(u.path)).resolve() if u.path else f
            if u.path.endswith("/"): target = target / "index.html"
            if not target.exists():
                errors.append(f"{f.relative_to(out)}: {kind} {ref} -> missing {target}")
            elif u.fragment and target.suffix == ".html" and target in pages and unquote(u.fragment) not in pages[target].ids:
                errors.append(f"{f.relative_to(out)}: {kind} {ref} -> no anchor #{u.fragment}")
    for f in pages:
        text = re.sub(r"<script.*?</script>|<[^>]+>", " ", f.read_text(encoding="utf-8"), flags=re.DOTALL)
        if re.search(r"(^|\s)#\|", text): errors.append(f"{f.relative_to(out)}: a `#|` directive is shown")
    return errors


# ---------------------------------------------------------------- the whole build

def source_digests()->dict[str, str]:
    "SHA-256 of every file the site is made from (notebooks, runbooks, the library, docs/, settings.ini), by repository path."
    files = [p for p in NBS.rglob("*.ipynb") if not any(SKIP_DIRS.match(part) for part in p.relative_to(NBS).parts)]
    files += [*RUNBOOKS.glob("*.ipynb"), *(ROOT / "mlops_nb").glob("*.py"), ROOT / "settings.ini"]
    files += [p for p in DOCS.rglob("*") if "__pycache__" not in p.parts]
    return {p.relative_to(ROOT).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files) if p.is_file()}


def stale(out:Path=OUT)->bool:
    "Is the site missing, or made from files that have changed since (by content, see `source_digests`)?"
    if not (out / "index.html").exists() or not RECORD.exists(): return True
    try: return json.loads(RECORD.read_text())["sources"] != source_digests()
    except (ValueError, KeyError): return True


def build_locked(out:Path=OUT, jobs:int=2, if_stale:bool=False)->int:
    "`build`, one at a time (pytest-xdist workers, a developer's build): later callers wait, then find the site fresh."
    import fcntl
    with open(ROOT / "_proc.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if if_stale and not stale(out):
            print(f"site: {out}/index.html is up to date")
            return 0
        return build(out, jobs)


def build(out:Path=OUT, jobs:int=2)->int:
    start = time.time()
    digests = source_digests()  # before anything runs: a file edited during the build leaves the site stale
    srcs = sources()
    pages = {str(p.resolve()): d for p, d, _ in srcs}
    symbols = _symbols()
    flags = _skip_flags()
    shutil.rmtree(PROC, ignore_errors=True)
    SRC.mkdir(parents=True)
    # longest first, so that the two workers finish together
    order = sorted(srcs, key=lambda s: (not s[2], "pipeline" not in s[1], "tutorials" not in s[1]))
    documented, timing = {}, {}
    sys.path.insert(0, str(DOCS))
    import build as this  # workers are spawned: they import this file as the module `build`
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(this.build_page, p, d, run, flags, pages, symbols) for p, d, run in order]
        for fut in futures:
            docname, docs, seconds = fut.result()
            documented.update({k: (docname, v) for k, v in docs.items()})
            timing[docname] = seconds
    print(f"executed and processed {len(srcs)} notebooks in {time.time() - start:.0f}s "
          f"(slowest: {', '.join(f'{d} {s:.0f}s' for d, s in sorted(timing.items(), key=lambda x: -x[1])[:3])})")
    (SRC / "cli_reference.md").write_text(cli_reference(), encoding="utf-8")
    # the navigation goes on the home page
    from execnb.nbio import mk_cell, read_nb, write_nb
    index = read_nb(SRC / "index.ipynb")
    index.cells.append(mk_cell(index_toctree(srcs, True), "markdown"))
    write_nb(index, SRC / "index.ipynb")
    # what docs/mlops_xref.py links: short and full names -> label of the show_doc entry
    xref = {}
    for name, full in symbols.items():
        if full in documented: xref[name] = documented[full][1]
    for full, (docname, _) in documented.items():
        mod = full.rsplit(".", 1)[0]
        xref.setdefault(mod, f"page:{docname}")
    (PROC / "xref.json").write_text(json.dumps(xref, indent=1, sort_keys=True))
    env = {**os.environ, "MLOPS_XREF": str(PROC / "xref.json"), "PYTHONPATH": str(DOCS)}
    # myst-nb writes next to the output folder (jupyter_execute/), so Sphinx builds inside _proc and the result moves
    html = PROC / "html"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-c", str(DOCS), "-d", str(PROC / "doctrees"),
           str(SRC), str(html)]
    sphinx_start = time.time()
    if subprocess.run(cmd, env=env, cwd=ROOT, check=False).returncode:
        print("docs: Sphinx reported warnings or errors (above)", file=sys.stderr)
        return 1
    if out.exists():
        if not (out / "objects.inv").exists() and any(out.iterdir()):
            print(f"docs: {out} exists and is not a site this script built; not replacing it", file=sys.stderr)
            return 1
        shutil.rmtree(out)
    shutil.move(html, out)
    errors = check_site(out)
    for e in errors: print(f"docs: {e}", file=sys.stderr)
    if errors: return 1
    RECORD.write_text(json.dumps({"sources": digests, "executed": {p.relative_to(NBS).as_posix(): {"page": d, "seconds": round(timing[d], 1)}
                                                                    for p, d, run in srcs if run}}, indent=1))
    n = len(list(out.rglob("*.html"))) - len([f for f in ("genindex.html", "search.html") if (out / f).exists()])
    print(f"site: {out}/index.html, {n} pages, Sphinx {time.time() - sphinx_start:.0f}s, total {time.time() - start:.0f}s")
    return 0


# ---------------------------------------------------------------- README.md from nbs/index.ipynb

def readme_text(index:Path=NBS / "index.ipynb")->str:
    "README.md's text: the markdown cells of the home page (and any shown code cells), links made repository-relative."
    import nbformat
    nb = nbformat.read(index, as_version=4)
    parts = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            def repl(m):
                target = m.group(2)
                if re.match(r"^[a-z]+:|^#|^/", target): return m.group(0)
                return f"{m.group(1)}({posixpath.normpath(posixpath.join('nbs', target))})"
            parts.append(re.sub(r"(\[[^\]]*\])\(([^)\s]+)\)", repl, cell.source.strip()))
        elif cell.cell_type == "code":
            d = _directives(cell.source)
            if {"hide", "export", "exporti", "default_exp"} & d.keys() or d.get("echo") == "false" or d.get("include") == "false": continue
            code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("#|")).strip()
            parts.append(f"```python\n{code}\n```")
            for o in cell.get("outputs", []):
                text = o.get("text") or o.get("data", {}).get("text/markdown") or o.get("data", {}).get("text/plain")
                if text: parts.append(f"```\n{''.join(text).rstrip()}\n```")
    return README_NOTE + "\n\n".join(parts) + "\n"


def readme(check:bool)->int:
    text = readme_text()
    if check:
        if README.read_text(encoding="utf-8") != text:
            print("README.md is stale: it is generated from nbs/index.ipynb; run `python docs/build.py readme` and commit it", file=sys.stderr)
            return 1
        print("README.md is up to date with nbs/index.ipynb")
        return 0
    README.write_text(text, encoding="utf-8")
    print(f"wrote {README}")
    return 0


def main(argv=None)->int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", choices=["site", "readme"], default="site")
    p.add_argument("--check", action="store_true", help="readme: fail if README.md is stale instead of writing it")
    p.add_argument("--out", default=str(OUT), help="site: output folder (default _docs/)")
    p.add_argument("--if-stale", action="store_true", help="site: build only when the site is older than its sources")
    p.add_argument("-j", "--jobs", type=int, default=2, help="site: notebooks executed at once (default 2)")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    if args.what == "readme": return readme(args.check)
    return build_locked(Path(args.out).resolve(), args.jobs, args.if_stale)


if __name__ == "__main__":
    sys.exit(main())
