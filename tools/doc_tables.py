"""Tables of the documentation site generated from the code (one source): the method list, each method family's
methods and parameters, and the "cite the methods" list, all read from :data:`explainers.METHODS`.

A page asks for a table with a marker line, replaced when MkDocs builds the site (``hooks:`` in mkdocs.yml):

    <!-- gen:methods -->            every method: name, family, paper, cost, class-specific, signed
    <!-- gen:family attention -->   the methods of one family with their parameters
    <!-- gen:cite -->               each paper once, with the methods that implement it
    <!-- gen:apppages -->           the app's explainer pages and their methods (vit_explain_studio.settings)

``python tools/doc_tables.py methods`` (or ``family NAME``, ``cite``) prints a table.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- gen:(\w+)(?: (\w+))? -->$", re.M)

FAMILY_PAGES = {  # family -> (page under docs/methods/, title)
    "attention": ("attention.md", "Attention methods"),
    "lrp": ("lrp.md", "Relevance propagation (LRP)"),
    "cam": ("cam.md", "CAM methods"),
    "gradient": ("gradients.md", "Gradient methods"),
    "perturbation": ("perturbation.md", "Perturbation and mask methods"),
    "attribution": ("baselines.md", "Attribution baselines (captum)"),
}


def _methods():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from explainers import METHODS

    return METHODS


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _paper(m) -> str:
    return f"[{_cell(m.paper)}]({m.paper_url})" if m.paper_url else _cell(m.paper)


def _range(p) -> str:
    if p.choices:
        return " / ".join(f"`{c}`" for c in p.choices)
    lo, hi = p.min, p.max
    if lo is None and hi is None:
        return ""
    shown = [("model-dependent" if callable(v) else ("" if v is None else f"{v}")) for v in (lo, hi)]
    return f"{shown[0]} … {shown[1]}"


def methods_table() -> str:
    lines = ["| method | name | family | paper | cost per image | class-specific | signed map |",
             "|---|---|---|---|---|---|---|"]
    for name, m in _methods().items():
        page, _ = FAMILY_PAGES.get(m.family, (None, None))
        family = f"[{m.family}]({page})" if page else m.family
        lines.append(f"| `{name}` | {_cell(m.display_name)} | {family} | {_paper(m)} | {_cell(m.cost)} | "
                     f"{'yes' if m.class_specific else 'no'} | {'yes' if m.is_signed(m.defaults()) else 'no'} |")
    return "\n".join(lines)


def family_section(family: str) -> str:
    out = []
    for name, m in _methods().items():
        if m.family != family:
            continue
        out += [f"### {_cell(m.display_name)} (`{name}`)", "", m.description.strip() or "", "",
                f"- **Paper**: {_paper(m)}", f"- **Cost per image**: {_cell(m.cost)}",
                f"- **Class-specific**: {'yes' if m.class_specific else 'no (the same map for every class)'}",
                f"- **Signed map** (default parameters): {'yes' if m.is_signed(m.defaults()) else 'no'}", ""]
        if m.params:
            out += ["| parameter | type | default | range | recomputes the passes | meaning |",
                    "|---|---|---|---|---|---|"]
            for p in m.params:
                out.append(f"| `{p.name}` | {p.kind} | `{p.default!r}` | {_range(p)} | "
                           f"{'no' if p.cheap else 'yes'} | {_cell(p.help)} |")
            out.append("")
    if not out:
        return f"No method of the family {family!r} is registered."
    return "\n".join(out).strip()


def cite_list() -> str:
    papers: dict[str, tuple[str, list[str]]] = {}
    for name, m in _methods().items():
        key = m.paper_url or m.paper
        papers.setdefault(key, (_paper(m), []))[1].append(f"`{name}`")
    from explainers.models.rules import LIBRAGRAD_PAPER, LIBRAGRAD_URL

    wrapped = [f"`{n}`" for n in _methods().with_param("libragrad")]
    papers[LIBRAGRAD_URL] = (f"[{_cell(LIBRAGRAD_PAPER)}]({LIBRAGRAD_URL})",
                             [f"the `libragrad=True` option of {', '.join(wrapped)}"])
    lines = ["| paper | methods |", "|---|---|"]
    lines += [f"| {paper} | {', '.join(names)} |" for paper, names in papers.values()]
    return "\n".join(lines)


def app_pages_table() -> str:
    _methods()
    from vit_explain_studio.settings import EXPLAINER_PAGES

    lines = ["| page | methods | what it shows |", "|---|---|---|"]
    for spec in EXPLAINER_PAGES:
        names = ", ".join(f"`{n}`" for n in spec.available())
        lines.append(f"| {_cell(spec.title)} | {names} | {_cell(spec.intro)} |")
    return "\n".join(lines)


def render(kind: str, arg: str | None = None) -> str:
    if kind == "methods":
        return methods_table()
    if kind == "family":
        return family_section(arg or "")
    if kind == "cite":
        return cite_list()
    if kind == "apppages":
        return app_pages_table()
    raise ValueError(f"unknown generated table {kind!r}")


def expand(markdown: str) -> str:
    """Replace every marker line of a page with its table."""
    return MARKER.sub(lambda m: render(m.group(1), m.group(2)), markdown)


def on_page_markdown(markdown, page=None, config=None, files=None):  # MkDocs hook
    return expand(markdown)


SPHINX_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):(?=<code>)")


def on_page_content(html, page=None, config=None, files=None):  # MkDocs hook
    """The docstrings' Sphinx roles (``:func:`explain```) shown as plain code in the API reference."""
    return SPHINX_ROLE.sub("", html)


if __name__ == "__main__":
    print(render(*sys.argv[1:3]))
