"""One MiniWoB++ page driven with as few round trips as BrowserGym's semantics allow (used by `envs.browser`).

- Observation, reward and done come from ONE `page.evaluate`: BrowserGym's own element marker
  (`frame_mark_elements.js`, so bids are BrowserGym's), the element list, MiniWoB++'s reward globals and, for the
  HTML view, the page serialised exactly as `flatten_dom_to_str(extract_dom_snapshot(page))` prints it (before
  BeautifulSoup), so no DOM snapshot is taken and `prune_html` gives BrowserGym's pruned HTML.
  The marker runs without its wait for the IntersectionObserver (>= 40 ms a call) and without writing bids into
  ARIA attributes: both only feed BrowserGym's visibility ratios and AXTree bids, which these views do not read.
  The AXTree view keeps BrowserGym's full marking and its CDP AXTree.
- A new episode on a page that already holds the same task is started in place (MiniWoB++'s own reset, as its
  gymnasium env does: `Math.seedrandom(seed); core.startEpisodeReal()`), after clearing BrowserGym's bids so
  they are numbered as on a fresh load. Tasks where that is not the same as a fresh load are reloaded instead.
"""

from __future__ import annotations

import pkgutil

from browsergym.core.constants import BROWSERGYM_ID_ATTRIBUTE as BID_ATTR
from browsergym.core.constants import BROWSERGYM_SETOFMARKS_ATTRIBUTE as SOM_ATTR
from browsergym.core.constants import BROWSERGYM_VISIBILITY_ATTRIBUTE as VIS_ATTR

__all__ = ["observe_js", "state_js", "reinit_js", "html_of_raw", "TIMED_TASKS", "RELOAD_TASKS", "ELEMENTS_JS"]

TIMED_TASKS = frozenset(
    {
        "book-flight",
        "book-flight-nodelay",
        "chase-circle",
        "choose-date",
        "choose-date-easy",
        "choose-date-medium",
        "click-collapsible",
        "click-collapsible-2",
        "click-pie",
        "click-pie-nodelay",
        "hover-shape",
        "moving-items",
        "simon-says",
        "stock-market",
        "terminal",
        "use-autocomplete",
    }
)
"""Tasks whose pages change on timers or animations after an action (setTimeout/setInterval, d3 transitions,
jQuery UI animations or delays; found by grepping the task HTML): the host waits `settle_ms` after acting on
them, as BrowserGym waits before every observation. On every other task an action's effects are synchronous."""

RELOAD_TASKS = frozenset(
    {
        # benchmarks/audit_miniwob_reinit.py (2026-12-01, all 125 tasks, then 2 seed pairs on those that differed):
        # jQuery UI widgets rebuilt with other classes or without their handles, a document listener bound twice,
        # or a page that animates while it is compared
        "book-flight",
        "book-flight-nodelay",
        "click-menu-2",
        "click-pie",
        "drag-items",
        "drag-items-grid",
        "drag-sort-numbers",
        "form-sequence",
        "stock-market",
        "text-editor",
        "use-slider",
        "use-slider-2",
        # timeouts or transitions of the last episode may still be pending when the next one starts
        "chase-circle",
        "click-pie-nodelay",
        "moving-items",
        "simon-says",
        "terminal",
    }
)
"""Tasks whose in-place reset is not the same as a fresh load: the host reloads their page for every episode."""


def _marker_src() -> str:
    """BrowserGym's marker as a function value, minus the visibility wait and the ARIA bid copies."""
    src = pkgutil.get_data("browsergym.core", "javascript/frame_mark_elements.js").decode("utf-8")
    patches = (
        "await until(() => elems_to_be_visited.size == 0, visibility_marking_timeout);",
        'push_bid_to_attribute(elem_global_bid, elem, "aria-roledescription");',
        'push_bid_to_attribute(elem_global_bid, elem, "aria-description");',
    )
    for p in patches:
        if src.count(p) != 1:
            raise RuntimeError(
                f"browsergym's frame_mark_elements.js changed (no unique `{p}`): update envs/_miniwob_page.py"
            )
        src = src.replace(p, "")
    head, sep, rest = src.partition("\nasync function until")
    start = head.find("async ([parent_bid")
    if not sep or start < 0:
        raise RuntimeError("browsergym's frame_mark_elements.js changed: update envs/_miniwob_page.py")
    return f"(() => {{ const __mark = {head[start:]};\nasync function until{rest}\nreturn __mark; }})()"


_ELEMENTS_FN = r"""
function __elements() {
  const out = [];
  for (const el of document.body.querySelectorAll('[bid]')) {
    const r = el.getBoundingClientRect();
    const st = getComputedStyle(el);
    let own = '';
    for (const n of el.childNodes) if (n.nodeType === 3) own += n.textContent;
    const parent = el.parentElement ? (el.parentElement.getAttribute('bid') || '') : '';
    out.push({
      bid: el.getAttribute('bid'), tag: el.tagName.toLowerCase(), text: own.trim().replace(/\s+/g, ' ').slice(0, 120),
      inner: (el.innerText || el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 300),
      id: el.id || '', classes: (typeof el.className === 'string') ? el.className : '',
      type: el.type || '', value: (el.value === undefined || el.value === null) ? '' : String(el.value),
      checked: !!el.checked, title: el.getAttribute('title') || '', name: el.getAttribute('name') || '',
      visible: r.width > 0 && r.height > 0 && st.visibility !== 'hidden' && st.display !== 'none',
      x: Math.round(r.x), y: Math.round(r.y), w: Math.round(r.width), h: Math.round(r.height), parent,
      style: el.getAttribute('style') || '',
    });
  }
  return out;
}
"""

ELEMENTS_JS = "() => {" + _ELEMENTS_FN + "return __elements();\n}"
"""The element list of a page whose elements are already marked with bids."""

_WOB = "let wob = null;\n  try { wob = [WOB_RAW_REWARD_GLOBAL, WOB_DONE_GLOBAL]; } catch (e) {}\n"

state_js = "() => {" + _ELEMENTS_FN + _WOB + "return {elements: __elements(), wob: wob};\n}"
"""Element list and MiniWoB++'s [raw reward, done] (null off a task page) of an already marked page."""

_SERIALIZE_FN = (
    r"""
function __pseudos(el) {
  // the DOMSnapshot lists an element's generated boxes (::before, ::after, ::marker) before its children
  if (!el.checkVisibility()) return '';
  let out = '';
  for (const p of ['::before', '::after']) {
    const st = getComputedStyle(el, p);
    if (st.content !== 'none' && st.content !== 'normal' && st.display !== 'none') out += '<' + p + '></' + p + '>';
  }
  const st = getComputedStyle(el);
  if (st.display.includes('list-item') && (st.listStyleType !== 'none' || st.listStyleImage !== 'none'))
    out += '<::marker></::marker>';
  return out;
}
function __serialize(node, parentSkipped) {
  // flatten_dom_to_str's dfs over the live DOM instead of a DOMSnapshot (same node kinds, same strings)
  const t = node.nodeType;
  let before = '', after = '', skip = false;
  if (t === 3) { if (!parentSkipped && node.nodeValue !== null) before = node.nodeValue; }
  else if (t === 4) { if (!parentSkipped && node.nodeValue !== null) before = '<!CDATA[[' + node.nodeValue + ']]>'; }
  else if (t === 1) {
    const tag = node.nodeName.toLowerCase().trim();
    const attrs = [];
    let bid = null;
    for (const a of node.attributes) {
      if (a.name === '"""
    + BID_ATTR
    + """') bid = a.value;
      else if (a.name !== '"""
    + VIS_ATTR
    + """' && a.name !== '"""
    + SOM_ATTR
    + r"""') attrs.push(a.name + '="' + a.value + '"');
    }
    if (bid !== null) attrs.unshift('bid="' + bid + '"');
    before = '<' + tag + (attrs.length ? ' ' + attrs.join(' ') : '') + '>';
    after = '</' + tag + '>';
  }
  else skip = true;  // document, doctype, comment, processing instruction, fragment
  let html = before;
  if (t === 1) html += __pseudos(node);
  for (const c of node.childNodes) html += __serialize(c, skip);
  return html + after;
}
"""
)


def _observe_src() -> str:
    return (
        "async ([html]) => {\n  const __mark = "
        + _marker_src()
        + ";\n"
        + _ELEMENTS_FN
        + _SERIALIZE_FN
        + """
  const warnings = await __mark(['', '"""
        + BID_ATTR
        + """', 'standard_html']);
  """
        + _WOB
        + """  return {elements: __elements(), wob: wob, raw_html: html ? __serialize(document, false) : null,
          warnings: warnings};
}"""
    )


observe_js = _observe_src()
"""(html: bool) -> {elements, wob: [raw reward, done] or null, raw_html, warnings}, after BrowserGym's marking."""

reinit_js = (
    """async ([seed, maxTimeMs, readyTimeoutMs]) => {
  for (const a of ['$BID', '$VIS', '$SOM']) for (const el of document.querySelectorAll('[' + a + ']')) el.removeAttribute(a);
  delete window.browsergym_elem_counter;   // the marker numbers elements from 0 again, as on a fresh load
  delete window.browsergym_frame_id_generator;
  if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
  Math.seedrandom(seed);
  core.EPISODE_MAX_TIME = maxTimeMs;
  core.startEpisodeReal();
  const t0 = Date.now();
  while (!WOB_TASK_READY) {
    if (Date.now() - t0 > readyTimeoutMs) throw new Error('MiniWoB++ task not ready after ' + readyTimeoutMs + ' ms');
    await new Promise(r => setTimeout(r, 5));
  }
  const u = core.getUtterance();
  return (u !== null && typeof u === 'object') ? u.utterance : u;
}""".replace("$BID", BID_ATTR)
    .replace("$VIS", VIS_ATTR)
    .replace("$SOM", SOM_ATTR)
)
"""MiniWoB++'s in-place reset with BrowserGym's seed and time limit; returns the goal (`_get_goal`'s value)."""


def html_of_raw(raw_html: str) -> str:
    """BrowserGym's pruned HTML from the serialised page: `prune_html(flatten_dom_to_str(...))`'s last steps."""
    from browsergym.utils.obs import prune_html
    from bs4 import BeautifulSoup

    return prune_html(BeautifulSoup(raw_html, "lxml").prettify())
