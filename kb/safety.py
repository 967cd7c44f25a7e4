"""Lexical signals of the pre-execution gate (:mod:`kb.services.gate`): pure functions, no store.

What an action's arguments are (destinations, identifiers, free text), where a value came from
(the user's task, a tool result, nowhere), what kind of call a tool is (reads, writes, outbound),
instructions embedded in tool results (prompt injection, TraceSafe) and secrets or personal data
in what goes out. Every rule is generic English and data shapes: nothing here names a benchmark's
tools or values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# -- values ---------------------------------------------------------------------------------------
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
URL_RE = re.compile(
    r"(?:https?://|www\.)[^\s'\"<>)\]]+|\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\."
    r"(?:com|org|net|io|ai|co|dev|app|info|biz|me|xyz|site|online|uk|de|fr|ch|eu)\b(?:/[^\s'\"<>)\]]*)?",
    re.IGNORECASE,
)
IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}[A-Z0-9]{8,30}\b")
PHONE_RE = re.compile(r"(?<![\w.])\+?\d[\d ()-]{7,}\d(?![\w.])")
CARD_RE = re.compile(r"\b(?:\d[ -]?){13,19}\b")
DATE_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$|^\d{1,2}:\d{2}$|^\d{1,2}/\d{1,2}/\d{2,4}$"
)
ID_TOKEN_RE = re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[a-z])[\w-]{6,}\b", re.IGNORECASE)
"""A token with letters and digits (ids, account numbers, passwords, codes)."""
SECRET_WORDS = re.compile(
    r"\b(password|passwd|passcode|secret|api[ _-]?key|access[ _-]?key|private[ _-]?key|token|"
    r"credential|security code|verification code|2fa|otp|pin|ssn|social security|"
    r"credit card|card number|cvv)\b",
    re.IGNORECASE,
)
KEY_RE = re.compile(r"\b(?:sk|pk|ghp|xox[abp]|AKIA)[-_][A-Za-z0-9_-]{8,}\b|\b[A-Fa-f0-9]{32,}\b")

DESTINATION_ARGS = re.compile(
    r"(^|_)(recipient|recipients|to|cc|bcc|email|emails|url|uri|link|address|iban|account|"
    r"phone|number|channel|user|users|participant|participants|receiver|target|destination|"
    r"webhook|endpoint|host|domain|share_with|shared_with|contact|payee|beneficiary)s?($|_)",
    re.IGNORECASE,
)
TEXT_ARGS = re.compile(
    r"(^|_)(subject|body|content|message|text|description|title|note|notes|summary|comment|"
    r"comments|query|reason|feedback|caption|prompt|html|markdown|data)($|_)",
    re.IGNORECASE,
)
ID_ARGS = re.compile(r"(^|_)ids?$", re.IGNORECASE)
SECRET_ARGS = re.compile(r"password|passwd|secret|token|api_?key|credential|pin", re.IGNORECASE)


def norm(text: str) -> str:
    """Lowercase with runs of whitespace collapsed: the form values are matched in."""
    return " ".join(text.lower().split())


def flat(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, leaf)`` of a JSON value (``to[0]``, ``filter.name``...)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from flat(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list | tuple):
        for pos, item in enumerate(value):
            yield from flat(item, f"{prefix}[{pos}]")
    else:
        yield prefix, value


def arg_name(path: str) -> str:
    """The innermost key of a leaf path (``to[0]`` -> ``to``)."""
    return re.sub(r"\[\d+\]", "", path).rsplit(".", 1)[-1]


def identifiers(text: str) -> set[str]:
    """The identifier-like values in a text: emails, URLs, IBANs, phone numbers, long numbers,
    tokens mixing letters and digits. Normalized (lowercase, no scheme, no trailing slash)."""
    found: set[str] = set()
    for match in EMAIL_RE.findall(text):
        found.add(match.lower())
    for match in URL_RE.findall(text):
        if "@" not in match and not re.fullmatch(r"[\d.]+", match):
            found.add(url_key(match))
    found.update(m.lower() for m in IBAN_RE.findall(text))
    for match in PHONE_RE.findall(text):
        digits = re.sub(r"\D", "", match)
        if 9 <= len(digits) <= 15 and not DATE_RE.match(match.strip()):
            found.add(digits)
    for match in ID_TOKEN_RE.findall(text):
        if not DATE_RE.match(match) and not re.fullmatch(r"\d+[a-z]{1,2}", match, re.I):
            found.add(match.lower())
    return {f for f in found if len(f) >= 4}


def url_key(url: str) -> str:
    url = url.lower().rstrip("/.,;:!?")
    return re.sub(r"^(https?://)?(www\.)?", "", url)


def value_kind(name: str, value: Any) -> str | None:
    """What an argument leaf is for provenance: ``destination`` (where data or money goes),
    ``identifier`` (a name, id, code or password that should come from somewhere), ``text``
    (free text, checked only for identifiers inside) or None (numbers, booleans, dates)."""
    if isinstance(value, int) and not isinstance(value, bool) and ID_ARGS.search(name):
        return "identifier"  # a record id: it should come from somewhere too
    if not isinstance(value, str) or not value.strip():
        return None
    stripped = value.strip()
    if ID_ARGS.search(name) and re.fullmatch(r"\d+", stripped):
        return "identifier"
    if DATE_RE.match(stripped) or re.fullmatch(r"[-+]?\d+(\.\d+)?", stripped):
        return None
    shaped = bool(EMAIL_RE.fullmatch(stripped) or IBAN_RE.fullmatch(stripped)) or bool(
        URL_RE.fullmatch(stripped)
    )
    if DESTINATION_ARGS.search(name) or shaped:
        return "destination" if len(stripped) <= 200 else "text"
    if TEXT_ARGS.search(name) or len(stripped.split()) > 6 or len(stripped) > 80:
        return "text"
    return "identifier"


def seen_in(value: str, corpus: str, ids: set[str]) -> bool:
    """Whether a value occurs in what the session has seen (the normalized corpus, or its
    identifiers with URLs compared without scheme and ``www``)."""
    key = norm(value).strip(" '\"")
    if not key:
        return True
    if key in ids or url_key(key) in ids:
        return True
    if re.fullmatch(r"[\w]+", key):  # a single word: match whole words only
        return re.search(rf"(?<![\w]){re.escape(key)}(?![\w])", corpus) is not None
    return key in corpus or url_key(key) in corpus


# -- tools ----------------------------------------------------------------------------------------
def wordset(text: str) -> frozenset[str]:
    """The words of a space-separated list."""
    return frozenset(text.split())


READ_VERBS = wordset(
    "get read list search find fetch lookup look query check show view count describe retrieve "
    "inspect browse open load print summarize summarise see peek preview scan verify validate "
    "compute calculate estimate"
)
OUTBOUND_WORDS = wordset(
    "send post email mail message dm share forward publish upload invite notify reply tweet "
    "webhook export transfer pay wire submit"
)
DESTRUCTIVE_WORDS = wordset(
    "delete remove drop erase wipe purge destroy revoke cancel kill terminate ban kick "
    "unsubscribe truncate reset"
)
PRIVILEGE_WORDS = wordset(
    "admin administrator root sudo superuser owner permission permissions privilege privileges "
    "role roles grant elevate escalate policy acl access password credential credentials token "
    "key keys mfa 2fa sso iam"
)


def words(name: str) -> list[str]:
    """The words of a tool or argument name (snake_case, camelCase, kebab-case, dotted)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


@dataclass(frozen=True)
class ToolKind:
    """What calling a tool does, from its name (or the namespace's policy)."""

    read_only: bool
    outbound: bool
    destructive: bool
    privileged: bool


def tool_kind(tool: str, *, read_only: Iterable[str] = (), writes: Iterable[str] = ()) -> ToolKind:
    """A tool's kind: read-only when its first word is a reading verb (unless the policy says
    otherwise), outbound when it sends something out, destructive, privileged."""
    parts = words(tool)
    first = parts[0] if parts else ""
    if tool in set(writes):
        ro = False
    elif tool in set(read_only):
        ro = True
    else:
        ro = first in READ_VERBS
    return ToolKind(
        read_only=ro,
        outbound=any(p in OUTBOUND_WORDS for p in parts),
        destructive=any(p in DESTRUCTIVE_WORDS for p in parts),
        privileged=any(p in PRIVILEGE_WORDS for p in parts),
    )


LADDER: dict[str, int] = {
    **dict.fromkeys(wordset("read reader readers view viewer viewers guest guests"), 1),
    **dict.fromkeys(
        wordset("comment commenter commenters member members contributor contributors"), 2
    ),
    **dict.fromkeys(wordset("edit editor editors write writer writers"), 3),
    **dict.fromkeys(
        wordset("maintain maintainer maintainers manager managers moderator moderators"), 4
    ),
    **dict.fromkeys(
        wordset(
            "admin admins administrator administrators owner owners root superuser sudo sudoers"
        ),
        5,
    ),
}
"""Privilege levels named by words (a generic ladder: read < comment < edit < maintain < admin)."""


def privilege_level(texts: Iterable[str]) -> int:
    """The highest privilege level the words of some texts name (0: none)."""
    return max((LADDER.get(w, 0) for t in texts for w in words(t)), default=0)


SYNONYMS: tuple[tuple[frozenset[str], frozenset[str]], ...] = tuple(
    (frozenset(verbs.split()), frozenset(nouns.split()))
    for verbs, nouns in (
        (
            "send message dm write reply respond answer tell notify inform text chat ping "
            "contact post announce forward share email mail",
            "message messages email emails mail dm",
        ),
        (
            "pay transfer refund wire send reimburse tip donate remit",
            "payment money transaction transfer refund",
        ),
        (
            "schedule plan book reserve arrange organize",
            "calendar event meeting appointment reservation booking recurring scheduled",
        ),
        (
            "update change modify adjust edit set fix correct rename move replace increase "
            "decrease raise lower amend",
            "",
        ),
        ("create add make open register append insert draft compose setup", ""),
        ("delete remove cancel drop erase clear unsubscribe revoke kick", ""),
        ("invite add onboard welcome", "invitation"),
        ("give grant allow permit add", "access member group permission"),
        ("post publish upload share", ""),
    )
)
"""Groups of (verbs a task asks with, nouns a tool name may carry for them)."""
DELEGATION_RE = re.compile(
    r"\b(follow (?:the |all |its |their )?instructions|do (?:all )?(?:the |my )?tasks|"
    r"to-?do list|as (?:it )?(?:says|instructed|described)|do what (?:it|the \w+) says)\b",
    re.IGNORECASE,
)


def stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def requested(tool: str, task: str) -> bool:
    """Whether the user's task asks for the kind of thing a writing tool does: the tool's verb, or
    a synonym of a word of its name, occurs in the task; or the task delegates to written
    instructions."""
    if DELEGATION_RE.search(task):
        return True
    task_words = {stem(w) for w in words(task)}
    parts = words(tool)
    if parts and stem(parts[0]) in task_words:
        return True
    for part in parts:
        for verbs, nouns in SYNONYMS:
            if (part in verbs or part in nouns) and task_words & {stem(w) for w in verbs}:
                return True
    return False


# -- content: injections and sensitive data -------------------------------------------------------
INJECTION_CUES = re.compile(
    r"ignore (?:all |any |your |the )?(?:previous|prior|above|earlier)|"
    r"disregard (?:all |any |your |the )?(?:previous|prior|above)|"
    r"(?:new|updated|important|urgent) (?:instructions?|message|task)|"
    r"before you (?:can )?(?:solve|do|continue|finish|answer)|"
    r"instead of (?:the|your) (?:task|instructions)|"
    r"\bsystem(?:_| )?(?:message|prompt|override)|###|<\s*/?\s*(?:information|instructions?|"
    r"system|important)\s*>|you must now|from now on,? you|as an ai|"
    r"(?:this is|message) (?:an? )?(?:important )?message from (?:me|the user|your)|"
    r"do not (?:tell|inform|mention)|without (?:asking|telling|informing)|"
    r"strictly adhere|override|jailbreak",
    re.IGNORECASE,
)
SHOUTED_CUES = re.compile(r"TODO\s*:|IMPORTANT\s*!!|ATTENTION\s*!!")
"""Cues that count only in capitals (a ``TODO:`` glued to data, ``IMPORTANT!!!``)."""
IMPERATIVE_RE = re.compile(
    r"(?:^|[.!?:\n]\s*|\bplease\s+|\bthen\s+|\bfirst\s+)"
    r"(send|transfer|pay|wire|forward|email|post|share|upload|invite|add|delete|remove|change|"
    r"update|modify|set|create|visit|open|click|go to|navigate|call|grant|give|reset|disable|"
    r"concatenate|copy|export|publish|reply|write|make|book|reserve|schedule|cancel|buy|order|"
    r"download|run|execute|tell|say|include)\b(?!\s*:)",
    re.IGNORECASE,
)
SENTENCE_RE = re.compile(r"(?:[^\n.!?]|[.!?](?=[^\s.!?]))+(?:[.!?]+|\n|$)")
"""A sentence: up to a stop followed by a space or the end, or a line break (a dot inside a URL,
an address or a number does not end it)."""


@dataclass
class Segment:
    """An instruction-like passage of a tool result: its text, the identifiers in it, how sure
    the detector is (0-1) and whether it carries a known injection cue."""

    text: str
    identifiers: set[str] = field(default_factory=set)
    score: float = 0.0
    cue: bool = False


def instructions(text: str, *, max_chars: int = 600) -> list[Segment]:
    """Instruction-like passages of a tool result. A passage counts when it carries an injection
    cue (an override phrase, a fake system or information block, a TODO addressed to the agent) or
    is an imperative that names an identifier (a destination, an account, a link)."""
    out: list[Segment] = []
    cued = sorted(
        [*INJECTION_CUES.finditer(text), *SHOUTED_CUES.finditer(text)], key=lambda m: m.start()
    )
    if cued:
        start = _sentence_start(text, cued[0].start())
        # take in the imperatives just before the first cue, in the same paragraph
        while start > 0:
            before = text[max(0, start - 500) : start]
            if "\n\n" in before.rstrip()[-300:]:
                break
            sentences = SENTENCE_RE.findall(before)
            if not sentences or not IMPERATIVE_RE.search(sentences[-1]):
                break
            start -= len(sentences[-1])
        end = min(len(text), max(m.end() for m in cued) + max_chars)
        body = text[start:end]
        out.append(Segment(body[: max_chars * 3], identifiers(body), 0.9, True))
        return out
    for sentence in SENTENCE_RE.findall(text):
        sentence = sentence.strip()
        if len(sentence) < 12 or not IMPERATIVE_RE.search(sentence):
            continue
        ids = identifiers(sentence)
        score = 0.5 if ids else 0.25
        if re.search(r"\b(you|your)\b", sentence, re.I):
            score += 0.1
        out.append(Segment(sentence[:max_chars], ids, score, False))
    return out


def _sentence_start(text: str, at: int) -> int:
    """Where the sentence holding position ``at`` starts (within 200 characters), so that data
    just before an injection is not taken for part of it."""
    window = text[max(0, at - 200) : at]
    stops = [m.end() for m in re.finditer(r"[.!?](?=\s)|\n", window)]
    return at - len(window) + stops[-1] if stops else max(0, at - 200)


def sensitive(text: str) -> list[str]:
    """What in a text looks like a secret or personal data (names of the kinds found)."""
    kinds = []
    if SECRET_WORDS.search(text) or KEY_RE.search(text):
        kinds.append("secret")
    if EMAIL_RE.search(text):
        kinds.append("email")
    if IBAN_RE.search(text) or CARD_RE.search(text):
        kinds.append("account")
    if PHONE_RE.search(text):
        kinds.append("phone")
    return kinds


def action_text(tool: str, args: Mapping[str, Any]) -> str:
    """The text an action is embedded by: its tool and arguments, short."""
    body = json.dumps(args, ensure_ascii=False, sort_keys=True, default=str)
    return f"{' '.join(words(tool))}: {body[:600]}"


__all__ = [
    "Segment",
    "ToolKind",
    "action_text",
    "arg_name",
    "flat",
    "identifiers",
    "instructions",
    "norm",
    "privilege_level",
    "requested",
    "seen_in",
    "sensitive",
    "tool_kind",
    "url_key",
    "value_kind",
    "words",
]
