"""What the sandbox's chat model reads in a text: labels asked for, the label a text is about,
a summary, and fields (header lines, emails, amounts, dates, URLs).

Classification: each label's keywords are its own words (3 letters or more) and, for a word
in `KEYWORDS`, that word's synonyms; a keyword matches a whole word of the text, lower case,
plurals and `-ed`/`-ing` forms included. The label with the most matches wins, the earlier
listed on a tie; with no match at all, a label named `other`, `unknown`, `none`, `misc` or
`general` if one is offered, else the first label.
"""

from __future__ import annotations

import math
import re
from datetime import date
from functools import lru_cache

KEYWORDS: dict[str, tuple[str, ...]] = {
    "urgent": ("asap", "immediately", "emergency", "critical", "outage", "right away"),
    "invoice": ("payment", "amount due", "bill", "billing", "receipt", "paid", "overdue"),
    "newsletter": ("unsubscribe", "digest", "weekly", "monthly", "edition", "subscribe"),
    "personal": ("family", "friend", "dinner", "birthday", "weekend", "mom", "dad", "party"),
    "spam": ("winner", "prize", "lottery", "click here", "congratulations", "free"),
    "support": ("help", "issue", "problem", "error", "broken", "cannot", "can't"),
    "bug": ("crash", "error", "exception", "broken", "fails", "regression"),
    "question": ("how do", "how can", "what is", "wondering", "could you"),
    "complaint": ("disappointed", "unacceptable", "refund", "angry", "terrible"),
    "positive": ("great", "love", "excellent", "thanks", "thank you", "happy", "awesome"),
    "negative": ("bad", "terrible", "awful", "hate", "angry", "disappointed", "worst"),
    "sales": ("pricing", "quote", "demo", "purchase", "buy", "discount"),
    "meeting": ("calendar", "schedule", "call", "invite", "agenda"),
}
FALLBACK_LABELS = ("other", "unknown", "none", "misc", "general")
LABELS = re.compile(r"\b(?:labels?|categories|classes|one of)\s*:\s*([^\n]+)", re.IGNORECASE)
HEADER = re.compile(r"^[A-Za-z][\w -]{0,30}:\s")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
URL = re.compile(r"https?://[^\s<>\"')\]]+")
AMOUNT = re.compile(
    r"(?P<symbol>[$€£])\s?(?P<a>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"|(?P<b>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s?(?P<code>USD|EUR|GBP|dollars?)\b"
)
NUMBER = re.compile(r"(?<![\w.-])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.-])-?\d+(?:\.\d+)?")
MONTH_NAMES = [
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
]  # fmt: skip
MONTHS = {
    **{name: n for n, name in enumerate(MONTH_NAMES, start=1)},
    **{name[:3]: n for n, name in enumerate(MONTH_NAMES, start=1)},
    "sept": 9,
}
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
DATES = (
    (re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b"), "ymd"),
    (re.compile(rf"\b({_MONTH})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I), "mdy"),
    (re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+({_MONTH})\.?,?\s+(\d{{4}})\b", re.I), "dmy"),
    (re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b"), "us"),
)
CURRENCIES = {"$": "USD", "€": "EUR", "£": "GBP", "dollar": "USD", "dollars": "USD"}


def tokens(text: str) -> int:
    """The tokens the sandbox bills for `text`: one per four characters, rounded up."""
    return math.ceil(len(text) / 4)


def find_labels(text: str) -> tuple[list[str], str]:
    """The labels `text` offers (`labels: a, b or c`; also `categories:`, `classes:`,
    `one of:`), and the text without the line offering them."""
    match = LABELS.search(text)
    if match is None:
        return [], text
    parts = re.split(r"\s*(?:,|\||/|;|\bor\b)\s*", match.group(1))
    labels = [p.strip(" .'\"`[]") for p in parts]
    return [label for label in labels if label], text[: match.start()] + text[match.end() :]


def classify(text: str, labels: list[str]) -> str:
    """The label of `labels` whose keywords `text` matches most (the module's rules)."""
    scores = [score(text, label) for label in labels]
    best = max(scores, default=0)
    if best > 0:
        return labels[scores.index(best)]
    fallback = [label for label in labels if label.lower() in FALLBACK_LABELS]
    return (fallback or labels)[0]


def score(text: str, label: str) -> int:
    """How many times `text` matches a keyword of `label`."""
    return sum(len(_keyword(k).findall(text)) for k in keywords(label))


def keywords(label: str) -> tuple[str, ...]:
    words = [w for w in re.split(r"[^a-z0-9]+", label.lower()) if len(w) >= 3]
    return tuple(dict.fromkeys(k for w in words for k in (w, *KEYWORDS.get(w, ()))))


@lru_cache(maxsize=1024)
def _keyword(keyword: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(keyword)}(?:s|es|d|ed|ing)?\b", re.IGNORECASE)


def summarise(text: str) -> str:
    """The first sentence of the body (leading `Key: value` lines skipped), at most 160
    characters, then the body's counts: `Lead sentence. (12 words, 3 sentences)`."""
    lines = text.strip().splitlines()
    while lines and HEADER.match(lines[0]):
        lines.pop(0)
    body = " ".join(" ".join(lines).split())
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", body) if s]
    lead = sentences[0] if sentences else ""
    if len(lead) > 160:
        lead = lead[:159].rstrip() + "…"
    counts = f"({len(body.split())} words, {len(sentences)} sentences)"
    return f"{lead} {counts}" if lead else counts


def first_sentence(text: str) -> str:
    return summarise(text).rpartition(" (")[0]


def header(text: str, name: str) -> str | None:
    """The value of the line `Name: value` for a property `name` (`due_date` matches
    `Due date:`, `due-date:`), or of its first word's line (`from_email` reads `From:`)."""
    words = [w for w in re.split(r"[_\-\s]+", name) if w]
    for candidate in (words, words[:1]) if len(words) > 1 else (words,):
        pattern = r"[ _-]?".join(re.escape(w) for w in candidate)
        match = re.search(rf"(?im)^\s*{pattern}\s*:[ \t]*(\S.*?)\s*$", text)
        if match:
            return match.group(1)
    return None


def emails(text: str) -> list[str]:
    return EMAIL.findall(text)


def urls(text: str) -> list[str]:
    return [url.rstrip(".,;:!?") for url in URL.findall(text)]


def amounts(text: str) -> list[float]:
    """Money in `text` ($1,234.50, €12, 40 USD), in order."""
    return [float((m.group("a") or m.group("b")).replace(",", "")) for m in AMOUNT.finditer(text)]


def numbers(text: str) -> list[float]:
    return [float(m.group().replace(",", "")) for m in NUMBER.finditer(text)]


def currency(text: str) -> str | None:
    """The ISO code of the first money amount's currency."""
    match = AMOUNT.search(text)
    if match is None:
        return None
    found = match.group("symbol") or match.group("code")
    return CURRENCIES.get(found.lower(), found.upper())


def dates(text: str) -> list[str]:
    """Dates in `text` as ISO `YYYY-MM-DD`, in order; `3/4/2026` is read as US (March 4)."""
    found: list[tuple[int, str]] = []
    for pattern, order in DATES:
        for match in pattern.finditer(text):
            iso = _iso(match.groups(), order)
            if iso is not None:
                found.append((match.start(), iso))
    return [iso for _, iso in sorted(found)]


def _iso(parts: tuple[str | None, ...], order: str) -> str | None:
    a, b, c = (str(p) for p in parts)
    month = {"ymd": b, "mdy": a, "dmy": b, "us": a}[order]
    day = {"ymd": c, "mdy": b, "dmy": a, "us": b}[order]
    year = a if order == "ymd" else c
    number = MONTHS[month.lower()] if month.isalpha() else int(month)
    try:
        return date(int(year), number, int(day)).isoformat()
    except ValueError:
        return None
