"""Sphinx extension: a backticked exported name (`run_pipeline`, `Contract`, `mlops_nb.stage`) links to its documentation.

docs/build.py writes the map (MLOPS_XREF, a JSON file) from nbdev's `mlops_nb/_modidx.py` and the `show_doc` entries it
found: name -> the label in front of that entry, or "page:DOCNAME" for a module. Literals already inside a link, in
headings and in code blocks are left alone; a name with no documented entry stays plain text.
"""
import json
import os

from docutils import nodes
from sphinx.transforms.post_transforms import SphinxPostTransform


class LinkExportedNames(SphinxPostTransform):
    default_priority = 5

    def run(self):
        path = os.environ.get("MLOPS_XREF")
        if not path: return
        with open(path, encoding="utf-8") as f: xref = json.load(f)
        std = self.env.domains.standard_domain
        here = self.env.docname
        for node in list(self.document.findall(nodes.literal)):
            if _inside(node, (nodes.reference, nodes.title, nodes.literal_block)): continue
            text = node.astext().strip()
            target = xref.get(text.removesuffix("()"))
            if not target: continue
            if target.startswith("page:"): docname, anchor = target[5:], ""
            elif target in std.anonlabels: docname, anchor = std.anonlabels[target]
            else: continue
            uri = "" if docname == here else self.app.builder.get_relative_uri(here, docname)
            if anchor: uri += "#" + anchor
            ref = nodes.reference("", "", internal=True, refuri=uri or "#", classes=["mlops-xref"])
            node.replace_self(ref)
            ref.append(node)


def _inside(node, types):
    while node is not None:
        if isinstance(node, types): return True
        node = node.parent
    return False


def setup(app):
    app.add_post_transform(LinkExportedNames)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
