"""The `show_doc` renderer of the site: nbdev's markdown (signature and docstring) followed by the docments table.

nbdev 2.4 with fastcore 1.8+ shows a signature whose parameters carry their docments as comments; the site also
shows fastcore's docments table (`DocmentTbl`: parameter, type, default, details, and the return value), which is
what nbdev's show_doc used to render and what readers scan. docs/build.py makes `show_doc` use this renderer in the
kernel that executes each notebook copy; the notebooks themselves are unchanged.
"""
from fastcore.docments import DocmentTbl
from nbdev.showdoc import BasicMarkdownRenderer


class SignatureAndTable(BasicMarkdownRenderer):
    "nbdev's `show_doc` markdown, then the parameter table when the symbol has docments."
    def _repr_markdown_(self):
        md = super()._repr_markdown_()
        try: table = DocmentTbl(self.sym)._repr_markdown_()
        except (TypeError, ValueError): table = ""
        return f"{md}\n\n{table}" if table else md
