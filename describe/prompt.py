"""The versioned description prompt and the redaction of text read off images.

`PROMPT_VERSION` is part of every stored description's key: change the wording, bump the version,
and a rerun describes every image again instead of skipping it.
"""
from __future__ import annotations

import re
from typing import Any

from vfr.describe.schema import SceneDescription

PROMPT_VERSION = "p1"

SYSTEM = (
    "You describe photographs for a text search engine. You are factual and exhaustive but concise. "
    "You never identify people: no names, no guesses at who someone is, no celebrities, no ethnicity, "
    "religion, health or other sensitive traits; refer to people only as person, man, woman, child, "
    "player, etc., with coarse visible attributes (clothing colour, approximate age group, pose)."
)

USER = (
    "Describe this image as JSON matching the schema.\n"
    "- caption: one dense sentence naming the main subjects, what they do and where.\n"
    "- objects: every salient kind of thing, with count, colours, materials, size, state and coarse position; "
    "group identical instances with a count.\n"
    "- relations: spatial and semantic relations between the objects (subject, predicate, object).\n"
    "- actions: what people or animals are doing.\n"
    "- setting: the scene type, indoor or outdoor, time of day and weather when visible.\n"
    "- visible_text: text that is legible in the image, verbatim; empty if none.\n"
    "- style: the photographic style (e.g. close-up photo, aerial view, black-and-white, screenshot).\n"
    "Only state what is visible. Do not guess identities, brands you cannot read, or hidden details."
)


def messages(image: Any, system: str = SYSTEM, user: str = USER) -> list[dict[str, Any]]:
    """OpenAI-style chat messages for one image (a PIL image for vLLM, or an `image_url` part dict)."""
    part = image if isinstance(image, dict) else {"type": "image_pil", "image_pil": image}
    return [{"role": "system", "content": system},
            {"role": "user", "content": [part, {"type": "text", "text": user}]}]


def prompt_version(redact: bool) -> str:
    """Descriptions kept unredacted are a different product, so they get a different key."""
    return PROMPT_VERSION if redact else f"{PROMPT_VERSION}+raw"


# -- redaction -------------------------------------------------------------------------------------
# Order matters: e-mails and URLs before phone numbers and digit runs (which would eat their parts).
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("[email]", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.I)),
    ("[url]", re.compile(r"\b(?:https?://|www\.)\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|co|uk|de|fr|info|biz|gov|edu)\b(?:/\S*)?", re.I)),
    ("[phone]", re.compile(r"(?<![\w])\+?\(?\d[\d\s().-]{6,}\d(?![\w])")),
    ("[number]", re.compile(r"\d{5,}")),
]


# Plate candidates: up to three upper-case alphanumeric groups ("AB12 CDE", "7ABC123", "M-AB 1234").
_PLATE = re.compile(r"(?<![\w-])[A-Z0-9]{1,8}(?:[ -][A-Z0-9]{1,4}){0,2}(?![\w-])")


def _plate(m: re.Match[str]) -> str:
    s = m.group(0)
    alnum = re.sub(r"[ -]", "", s)
    digits = sum(c.isdigit() for c in alnum)
    has_word = any(g.isalpha() and len(g) >= 4 for g in re.split(r"[ -]", s))  # "SALE 50", "EXIT 12"
    looks_like_plate = 5 <= len(alnum) <= 9 and 2 <= digits < len(alnum) and not has_word
    return "[plate]" if looks_like_plate else s


def redact_text(text: str) -> str:
    """Mask e-mail addresses, URLs, phone numbers, number plates and long digit runs."""
    for token, pattern in _PATTERNS[:3]:
        text = pattern.sub(token, text)
    text = _PLATE.sub(_plate, text)
    return _PATTERNS[3][1].sub(_PATTERNS[3][0], text)


def redact(desc: SceneDescription) -> SceneDescription:
    """Redact visible text and the caption (which may quote it); bounds still hold afterwards."""
    def fit(s: str, limit: int) -> str:
        return redact_text(s)[:limit]

    return desc.model_copy(update={
        "caption": fit(desc.caption, 200),
        "visible_text": [fit(t, 80) for t in desc.visible_text],
    })
