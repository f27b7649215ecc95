"""A matplotlib SVG made fit to sit inside a desk page, under the desk's Content-Security-Policy.

The policy (headers.py) allows no script and only the templates' own `<style>` blocks, by hash: a
`style="..."` attribute or a `<style>` element inside an inline SVG would be refused, and the chart drawn
black. So every `style` attribute becomes presentation attributes (`fill="#009e73"`: not CSS, never
subject to the policy), and the document's one `<style>` becomes the same on the root. Several charts
share a page: the ids matplotlib generates (and repeats from chart to chart) are dropped, or prefixed
with the chart's key where something refers to them. The chart is named and described for assistive
technologies: `role="img"` with a `<title>` and a `<desc>`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)

_HREF = f"{{{XLINK_NS}}}href"
_URL_REF = re.compile(r"url\(#([^)]+)\)")
_DROPPED = {f"{{{SVG_NS}}}{tag}" for tag in ("metadata", "style", "script", "foreignObject")}
# What matplotlib's one stylesheet (`*{stroke-linejoin: round; stroke-linecap: butt}`) says, inherited.
_ROOT_DEFAULTS = {"stroke-linejoin": "round", "stroke-linecap": "butt"}


def _drop_unsafe(parent: ET.Element) -> None:
    for child in list(parent):
        if child.tag in _DROPPED:
            parent.remove(child)
        else:
            _drop_unsafe(child)


def _style_to_attributes(element: ET.Element) -> None:
    style = element.attrib.pop("style", None)
    if style is None:
        return
    for declaration in style.split(";"):
        name, _, value = declaration.partition(":")
        if name.strip() and value.strip():
            element.attrib.setdefault(name.strip(), value.strip())


def _referenced_ids(root: ET.Element) -> set[str]:
    referenced = set()
    for element in root.iter():
        for name, value in element.attrib.items():
            if name == _HREF and value.startswith("#"):
                referenced.add(value[1:])
            referenced.update(_URL_REF.findall(value))
    return referenced


def _scope_ids(root: ET.Element, key: str) -> None:
    """Ids nothing refers to go; the others take the chart's key, and so do the references to them."""
    referenced = _referenced_ids(root)
    for element in root.iter():
        element_id = element.attrib.pop("id", None)
        if element_id in referenced:
            element.set("id", f"{key}-{element_id}")
        for name, value in element.attrib.items():
            if name == _HREF and value[1:] in referenced:
                element.set(name, f"#{key}-{value[1:]}")
            elif "url(#" in value:
                element.set(name, _URL_REF.sub(lambda m: f"url(#{key}-{m.group(1)})", value))


def inline_svg(document: str, key: str, title: str, description: str) -> str:
    """The `<svg>` element of a matplotlib SVG `document`, safe to inline (see the module's docstring);
    `key` makes its ids unique on the page (letters, digits and dashes)."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*", key):
        raise ValueError(f"chart key {key!r}: use lower-case letters, digits and dashes, "
                         "starting with a letter")
    root = ET.fromstring(document.encode("utf-8"))
    _drop_unsafe(root)
    for element in root.iter():
        _style_to_attributes(element)
    _scope_ids(root, key)
    for name in ("width", "height"):  # the page sizes it; the viewBox keeps its proportions
        root.attrib.pop(name, None)
    for name, value in _ROOT_DEFAULTS.items():
        root.set(name, value)
    root.set("role", "img")
    root.set("aria-labelledby", f"{key}-title")
    root.set("aria-describedby", f"{key}-desc")
    root.set("class", "chart-svg")
    title_element = ET.Element(f"{{{SVG_NS}}}title", {"id": f"{key}-title"})
    title_element.text = title
    desc_element = ET.Element(f"{{{SVG_NS}}}desc", {"id": f"{key}-desc"})
    desc_element.text = description
    root.insert(0, desc_element)
    root.insert(0, title_element)
    return ET.tostring(root, encoding="unicode")
