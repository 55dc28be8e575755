#!/usr/bin/env python3
"""Regenerate the development corpus ``eval/data/pydocs_corpus.jsonl``.

The corpus is real text that nobody on the team wrote: the reference
documentation and docstrings that ship with CPython's standard library
(PSF licence).  Two sources, both available offline in any CPython install:

* ``pydoc_data.topics.topics`` -- the ~79 Language Reference / library
  topics that ``help("TOPIC")`` shows (long texts, e.g. "The try statement",
  "Format String Syntax", "String Methods").
* Docstrings (``__doc__`` cleaned with ``inspect.cleandoc``) of a fixed list
  of public stdlib modules, of their public functions and classes, and of the
  public methods those classes define themselves.

Output is deterministic for a given CPython version: modules and members are
visited in sorted order, identical texts are kept once (first one wins), and
object addresses (``at 0x7f...``) are scrubbed from signatures.  The docstrings
differ a little between CPython releases, so the version is recorded in every
document's metadata (``metadata.python``); the checked-in file was made with
CPython 3.11.7 on Linux.

Usage::

    python eval/make_corpus.py            # writes eval/data/pydocs_corpus.jsonl
    python eval/make_corpus.py --out FILE
    python eval/make_corpus.py --check    # also verify eval/data/pydocs_queries.jsonl
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import platform
import re
import sys
import types
from pathlib import Path

EXPECTED_PYTHON = "3.11"
DOCS = "https://docs.python.org/3.11"
MIN_WORDS = 15

# Public standard-library modules whose docstrings make up the corpus.
MODULES = sorted(
    """
    abc argparse array ast asyncio atexit base64 binascii bisect builtins bz2
    cProfile calendar cmath codecs collections collections.abc colorsys
    concurrent.futures configparser contextlib contextvars copy csv dataclasses
    datetime decimal difflib dis doctest email.message email.utils enum faulthandler
    filecmp fileinput fnmatch fractions functools gc getopt getpass gettext glob
    graphlib gzip hashlib heapq hmac html html.parser http.client http.cookies
    http.server importlib importlib.metadata importlib.resources inspect io
    ipaddress itertools json keyword linecache locale logging logging.handlers lzma
    math mimetypes multiprocessing numbers operator os os.path pathlib pdb pickle
    pkgutil platform plistlib pprint pstats queue random re reprlib runpy sched
    secrets selectors shelve shlex shutil signal smtplib socket socketserver sqlite3
    ssl stat statistics string struct subprocess sys sysconfig tarfile tempfile
    textwrap threading time timeit tokenize tomllib traceback tracemalloc types
    typing unicodedata unittest unittest.mock urllib.parse urllib.request
    urllib.robotparser uuid venv warnings wave weakref webbrowser xml.dom.minidom
    xml.etree.ElementTree zipapp zipfile zlib zoneinfo
    """.split()
)

# asyncio's documentation is split over several pages.
ASYNCIO_PAGES = {
    "asyncio.base_events": "asyncio-eventloop",
    "asyncio.events": "asyncio-eventloop",
    "asyncio.exceptions": "asyncio-exceptions",
    "asyncio.futures": "asyncio-future",
    "asyncio.locks": "asyncio-sync",
    "asyncio.queues": "asyncio-queue",
    "asyncio.runners": "asyncio-runner",
    "asyncio.streams": "asyncio-stream",
    "asyncio.subprocess": "asyncio-subprocess",
    "asyncio.taskgroups": "asyncio-task",
    "asyncio.tasks": "asyncio-task",
    "asyncio.timeouts": "asyncio-task",
}

# Page of the CPython docs holding each pydoc topic (the Sphinx label is the
# topic name, and Sphinx emits it as an anchor on that page).
TOPIC_PAGES = {
    "reference/simple_stmts": (
        "assert assignment augassign break continue del global import nonlocal pass raise return yield"
    ),
    "reference/compound_stmts": "async class compound else for function if try while with",
    "reference/expressions": (
        "atom-identifiers atom-literals attribute-references await binary bitwise "
        "booleans calls comparisons conversions dict exprlists in lambda lists "
        "operator-summary power shifting slicings subscriptions unary"
    ),
    "reference/datamodel": (
        "attribute-access callable-types context-managers customization "
        "numeric-types objects sequence-types specialnames types"
    ),
    "reference/lexical_analysis": "floating id-classes identifiers imaginary integers numbers strings",
    "reference/executionmodel": "dynamic-features exceptions execmodel naming",
    "library/stdtypes": (
        "bltin-code-objects bltin-ellipsis-object bltin-null-object bltin-type-objects "
        "specialattrs string-methods truth typesfunctions typesmapping typesmethods "
        "typesmodules typesseq typesseq-mutable"
    ),
    "library/string": "formatstrings",
    "library/pdb": "debugger",
}
# Built-in types whose methods are documented in library/stdtypes.
BUILTIN_TYPES = frozenset(
    "str bytes bytearray list tuple dict set frozenset int float complex range memoryview".split()
)
TOPIC_PAGE = {t: page for page, names in TOPIC_PAGES.items() for t in names.split()}

_ADDR = re.compile(r" at 0x[0-9a-fA-F]+")
_WS = re.compile(r"\s+")


def n_words(text: str) -> int:
    return len(text.split())


def clean_doc(obj, own: bool = True) -> str:
    """The object's own docstring, dedented; '' when it has none."""
    if own and isinstance(obj, type):
        doc = obj.__dict__.get("__doc__")
    else:
        doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str):
        return ""
    return _ADDR.sub("", inspect.cleandoc(doc)).strip()


def signature(name: str, obj) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""
    # Defaults evaluated at import time may name this machine's interpreter.
    if sys.executable:
        sig = sig.replace(repr(sys.executable), "sys.executable")
    if name.startswith("sysconfig."):  # 'venv' inside a venv, else 'posix_prefix'
        sig = re.sub(r"scheme='[^']*'", "scheme=get_default_scheme()", sig)
    return _ADDR.sub("", f"{name}{sig}")


def page_for(modname: str, obj=None) -> str:
    if modname == "asyncio" and obj is not None:
        return ASYNCIO_PAGES.get(getattr(obj, "__module__", ""), "asyncio")
    return modname.lower()


def url_for(modname: str, qualname: str, obj=None, top=None) -> str:
    if modname == "builtins":
        if isinstance(top, type) and issubclass(top, BaseException):
            return f"{DOCS}/library/exceptions.html#{qualname}"
        if isinstance(top, type) and top.__name__ in BUILTIN_TYPES and "." in qualname:
            return f"{DOCS}/library/stdtypes.html#{qualname}"
        return f"{DOCS}/library/functions.html#{qualname}"
    anchor = f"{modname}.{qualname}" if qualname else f"module-{modname}"
    return f"{DOCS}/library/{page_for(modname, top if top is not None else obj)}.html#{anchor}"


def public_members(mod: types.ModuleType, modname: str):
    """(name, obj) pairs of public functions and classes belonging to mod."""
    names = getattr(mod, "__all__", None)
    explicit = names is not None
    if not explicit:
        names = [n for n in dir(mod) if not n.startswith("_")]
    own_modules = {modname, mod.__name__, "_" + modname.rsplit(".", 1)[-1]}
    out = []
    for name in sorted(set(names)):
        if name.startswith("_"):
            continue
        obj = getattr(mod, name, None)
        if obj is None or isinstance(obj, types.ModuleType):
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        objmod = getattr(obj, "__module__", None) or ""
        if (
            not explicit
            and modname != "builtins"
            and not (objmod in own_modules or objmod.startswith(modname + ".") or objmod.startswith("_" + modname))
        ):
            continue
        out.append((name, obj))
    return out


def class_members(cls):
    """(name, obj) pairs of public methods/properties defined in cls itself."""
    out = []
    for name in sorted(cls.__dict__):
        if name.startswith("_"):
            continue
        raw = cls.__dict__[name]
        if isinstance(raw, (staticmethod, classmethod)):
            obj = raw.__func__
        elif isinstance(raw, property):
            obj = raw
        elif inspect.isroutine(raw) or inspect.isdatadescriptor(raw):
            obj = raw
        else:
            continue
        out.append((name, obj))
    return out


def make_doc(doc_id, title, url, text, source, module, pyver):
    return {
        "id": doc_id,
        "title": title,
        "url": url,
        "text": text,
        "metadata": {"source": source, "module": module, "python": pyver},
    }


def topic_docs(pyver):
    from pydoc_data.topics import topics

    # Some labels are aliases with identical text ("else" == "if"): keep the
    # label that names the section's own title, else the first in sorted order.
    by_text: dict[str, list[str]] = {}
    for name in sorted(topics):
        by_text.setdefault(topics[name].strip(), []).append(name)
    docs = []
    for text, names in by_text.items():
        title = text.splitlines()[0].strip()
        name = next((n for n in names if n.lower() in title.lower()), names[0])
        page = TOPIC_PAGE.get(name, "reference/index")
        docs.append(
            make_doc(
                f"py-topic-{name}",
                title,
                f"{DOCS}/{page}.html#{name}",
                text,
                "pydoc-topic",
                page,
                pyver,
            )
        )
    return sorted(docs, key=lambda d: d["id"])


def module_docs(pyver):
    # The same docstring is often reachable under several names (random.choices
    # is random.Random.choices; tarfile.open is TarFile.open; builtins.open is
    # io.open).  Keep one document per text: the shallowest name (module-level
    # function over method), then the earlier module, then the smaller id.
    best: dict[str, tuple[tuple, dict]] = {}

    def add(doc_id, title, url, body, sig, module, depth, mod_index):
        if n_words(body) < MIN_WORDS:
            return
        key = _WS.sub(" ", body)
        rank = (depth, mod_index, doc_id)
        if key in best and best[key][0] <= rank:
            return
        text = body
        if sig and not body.startswith(sig.split("(", 1)[0].rsplit(".", 1)[-1] + "("):
            text = f"{sig}\n\n{body}"
        best[key] = (rank, make_doc(doc_id, title, url, text, "module-docstring", module, pyver))

    for mod_index, modname in enumerate(MODULES):
        mod = importlib.import_module(modname)
        add(f"py-{modname}", modname, url_for(modname, ""), clean_doc(mod, own=False), "", modname, 0, mod_index)
        for name, obj in public_members(mod, modname):
            qual = name
            full = f"{modname}.{qual}" if modname != "builtins" else qual
            add(
                f"py-{modname}.{qual}",
                full,
                url_for(modname, qual, obj, obj),
                clean_doc(obj),
                signature(full, obj),
                modname,
                1,
                mod_index,
            )
            if inspect.isclass(obj):
                for mname, mobj in class_members(obj):
                    mqual = f"{qual}.{mname}"
                    mfull = f"{modname}.{mqual}" if modname != "builtins" else mqual
                    add(
                        f"py-{modname}.{mqual}",
                        mfull,
                        url_for(modname, mqual, mobj, obj),
                        clean_doc(mobj, own=False),
                        signature(mfull, mobj),
                        modname,
                        2,
                        mod_index,
                    )
    return [doc for _, doc in best.values()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data" / "pydocs_corpus.jsonl")
    ap.add_argument(
        "--check", action="store_true", help="verify that every relevant id in the queries file exists in the corpus"
    )
    ap.add_argument("--queries", type=Path, default=Path(__file__).resolve().parent / "data" / "pydocs_queries.jsonl")
    args = ap.parse_args(argv)

    pyver = platform.python_version()
    if not pyver.startswith(EXPECTED_PYTHON + "."):
        print(
            f"warning: running CPython {pyver}; the checked-in corpus was made with "
            f"{EXPECTED_PYTHON}.x and docstrings differ between releases",
            file=sys.stderr,
        )

    docs = sorted(topic_docs(pyver) + module_docs(pyver), key=lambda d: d["id"])
    ids = [d["id"] for d in docs]
    if len(set(ids)) != len(ids):
        raise SystemExit("duplicate document ids")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8", newline="\n") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False, sort_keys=False) + "\n")
    size = args.out.stat().st_size
    n_topics = sum(d["metadata"]["source"] == "pydoc-topic" for d in docs)
    print(
        f"wrote {len(docs)} docs ({n_topics} topics, {len(docs) - n_topics} docstrings), "
        f"{size / 1e6:.2f} MB, CPython {pyver} -> {args.out}"
    )
    if args.check:
        return check_queries(args.queries, set(ids))
    return 0


def check_queries(path: Path, ids: set[str]) -> int:
    """Every query has a unique qid, a non-empty text and 1-3 relevant ids that exist."""
    problems, qids, n = [], set(), 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            q = json.loads(line)
            n += 1
            qid, rel = q.get("qid"), q.get("relevant") or []
            if qid in qids:
                problems.append(f"{qid}: duplicate qid")
            qids.add(qid)
            if not str(q.get("query", "")).strip():
                problems.append(f"{qid}: empty query")
            if not 1 <= len(rel) <= 3 or len(set(rel)) != len(rel):
                problems.append(f"{qid}: needs 1-3 distinct relevant ids, has {rel}")
            problems += [f"{qid}: relevant id not in corpus: {r}" for r in rel if r not in ids]
    for p in problems:
        print(p, file=sys.stderr)
    print(f"checked {n} queries in {path}: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
