"""The structured scene description: the JSON Schema sent to the vision LLM and the validator of its output.

Every string and array is bounded so constrained generation always terminates.
`to_text()` renders a description into the text that is indexed; the renderer is versioned
(`RENDERER_VERSION`) because changing it changes every indexed document.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

RENDERER_VERSION = "r1"

Short = Annotated[str, Field(min_length=1, max_length=40)]
Phrase = Annotated[str, Field(min_length=1, max_length=80)]

Position = Literal[
    "left", "right", "center", "top", "bottom", "top-left", "top-right",
    "bottom-left", "bottom-right", "foreground", "background", "whole-image",
]
Size = Literal["tiny", "small", "medium", "large", "huge"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SceneObject(_Strict):
    """One kind of thing in the image; `count` groups identical instances."""

    name: Short
    count: int = Field(default=1, ge=1, le=100)
    colors: list[Short] = Field(default_factory=list, max_length=4)
    materials: list[Short] = Field(default_factory=list, max_length=3)
    size: Size | None = None
    states: list[Short] = Field(default_factory=list, max_length=4)
    position: Position | None = None


class Relation(_Strict):
    """A spatial or semantic relation between two named objects, e.g. (cat, sitting on, sofa)."""

    subject: Short
    predicate: Short
    object: Short


class Setting(_Strict):
    scene: Phrase
    indoor: bool | None = None
    time_of_day: Literal["day", "night", "dawn", "dusk", "unknown"] | None = None
    weather: Short | None = None


class SceneDescription(_Strict):
    """What a vision LLM saw in one image. Never names or identifies real people."""

    caption: Annotated[str, Field(min_length=1, max_length=200)]
    objects: list[SceneObject] = Field(default_factory=list, max_length=16)
    relations: list[Relation] = Field(default_factory=list, max_length=12)
    actions: list[Phrase] = Field(default_factory=list, max_length=8)
    setting: Setting
    visible_text: list[Phrase] = Field(default_factory=list, max_length=8)
    style: Short | None = Field(default=None, description="photographic style, e.g. 'close-up photo'")

    @classmethod
    def json_schema(cls) -> dict:
        """The JSON Schema given to structured decoding."""
        return cls.model_json_schema()

    def to_text(self) -> str:
        """Render for indexing (renderer `RENDERER_VERSION`).

        The caption comes first (dense encoders weigh the start of a text most); objects carry their
        count and attributes as plain words so BM25 matches "two red buses"; relations read as phrases.
        """
        parts = [_sentence(self.caption)]
        if self.objects:
            parts.append("Objects: " + "; ".join(_render_object(o) for o in self.objects) + ".")
        if self.relations:
            parts.append(" ".join(_sentence(f"{r.subject} {r.predicate} {r.object}") for r in self.relations))
        if self.actions:
            parts.append("Actions: " + "; ".join(self.actions) + ".")
        parts.append(_render_setting(self.setting))
        if self.visible_text:
            parts.append("Visible text: " + "; ".join(f'"{t}"' for t in self.visible_text) + ".")
        if self.style:
            parts.append(_sentence(f"Style: {self.style}"))
        return " ".join(p for p in parts if p)


_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _render_object(o: SceneObject) -> str:
    count = _NUMBER_WORDS[o.count] if o.count < len(_NUMBER_WORDS) else str(o.count)
    words = [count] + ([o.size] if o.size else []) + o.colors + o.materials + [o.name]
    text = " ".join(words)
    if o.states:
        text += " (" + ", ".join(o.states) + ")"
    if o.position:
        text += f" at {o.position}"
    return text


def _render_setting(s: Setting) -> str:
    bits = [s.scene]
    if s.indoor is not None:
        bits.append("indoors" if s.indoor else "outdoors")
    if s.time_of_day and s.time_of_day != "unknown":
        bits.append(f"at {s.time_of_day}")
    if s.weather:
        bits.append(f"weather {s.weather}")
    return _sentence("Setting: " + ", ".join(bits))


class _Renderer:
    """Structured JSON → indexed text, with its version: what the store's importer is given (the store
    does not import describe/)."""

    version = RENDERER_VERSION

    def __call__(self, structured: dict) -> str:
        return SceneDescription.model_validate(structured).to_text()


RENDERER = _Renderer()
