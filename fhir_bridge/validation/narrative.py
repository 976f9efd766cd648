"""Narrative XHTML rules txt-1 and txt-2: only the basic formatting elements and attributes,
no scripts, event handlers or active content, and some content.

https://hl7.org/fhir/R4/narrative.html#xhtml — the element and attribute lists below are the
ones that section names (HTML 4.0 chapters 7-11 and 15, links, images, style attributes).
Narrative is shown to people in EHR and research screens, so active content is refused.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

XHTML = "{http://www.w3.org/1999/xhtml}"
ELEMENTS = frozenset(
    "a abbr acronym b big blockquote br caption cite code col colgroup dd dfn div dl dt em "
    "h1 h2 h3 h4 h5 h6 hr i img li ol p pre q samp small span strong sub sup table tbody td "
    "tfoot th thead tr tt ul var".split()
)
ATTRIBUTES = frozenset(
    "title style class id lang dir accesskey tabindex href name src border cite alt span "
    "colspan rowspan align valign width height cellpadding cellspacing summary char charoff "
    "abbr axis headers scope frame rules".split()
)
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_URL_ATTRIBUTES = ("href", "src", "cite")


def narrative_problem(div: str) -> str | None:
    """Why `div` breaks txt-1 or txt-2, or None when it is acceptable narrative."""
    if "<!DOCTYPE" in div or "<!ENTITY" in div:
        return "narrative must not declare a DOCTYPE or entities"
    try:
        root = ElementTree.fromstring(div)
    except ElementTree.ParseError as exc:
        return f"narrative is not well-formed XHTML: {exc}"
    if root.tag != f"{XHTML}div":
        return "narrative must be an XHTML <div> element"
    has_content = False
    for element in root.iter():
        if not element.tag.startswith(XHTML) or element.tag[len(XHTML) :] not in ELEMENTS:
            return f"txt-1: element <{element.tag.rsplit('}', 1)[-1]}> is not allowed in narrative"
        for name, value in element.attrib.items():
            if name != _XML_LANG and name not in ATTRIBUTES:
                return f"txt-1: attribute '{name.rsplit('}', 1)[-1]}' is not allowed in narrative"
            if name in _URL_ATTRIBUTES and value.strip().lower().startswith(
                ("javascript:", "vbscript:", "data:text/html")
            ):
                return f"txt-1: {name} must not hold active content"
        # any element inside the div counts as content, as the reference validator has it
        # (the official Questionnaire-zika-virus-exposure-assessment has only an empty <pre>)
        if element is not root or (element.text or "").strip():
            has_content = True
    if not has_content:
        return "txt-2: the narrative has no content"
    return None
