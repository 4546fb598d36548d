"""The shape of inbound events, as pydantic models.

These models are the single source of truth: `schema/events/*.schema.json` are generated from
them (`digest schema export`, checked by a test), and validation errors carry field paths such as
`data.tools.1.reviews.0.score`. A missing fact is `null`, never a guess.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=20_000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Slug = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9._-]*$"
    ),
]
Count = Annotated[int, Field(ge=0, le=100_000_000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ReviewIn(Strict):
    """One persona's take. The condensed page layout states only the text."""

    persona: Literal["Builder", "Skeptic", "Futurist", "Founder", "Creator"] | None = None
    score: Annotated[int, Field(ge=0, le=100)] | None = None
    verdict: Literal["ship", "skip"] | None = None
    text: Text | None = None


class ToolIn(Strict):
    name: Name
    tagline: Text | None = None
    category: Text | None = None
    description: Text | None = None
    pricing: Text | None = None
    entry_price: Annotated[str, StringConstraints(max_length=50)] | None = None
    best_for: Text | None = None
    verdict: Literal["Ship", "Mixed", "Skip"] | None = None
    panel_ship: Count | None = None
    panel_skip: Count | None = None
    panel_ship_pct: Annotated[int, Field(ge=0, le=100)] | None = None
    community_ship: Count | None = None
    community_skip: Count | None = None
    reviews: list[ReviewIn] = Field(default_factory=list, max_length=10)


class ComparisonIn(Strict):
    """A whole comparison page: `comparison.published` and `comparison.updated` carry one."""

    slug: Slug
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    url: Annotated[str, StringConstraints(max_length=1000, pattern=r"^https?://")] | None = None
    category: Text | None = None
    published_at: datetime
    updated_at: datetime | None = None
    tools: list[ToolIn] = Field(min_length=2, max_length=2)

    @model_validator(mode="after")
    def _distinct_tools(self) -> ComparisonIn:
        if self.tools[0].name.casefold() == self.tools[1].name.casefold():
            raise ValueError("the two tools of a comparison must have different names")
        return self


class RetractionIn(Strict):
    slug: Slug
    reason: Text | None = None


class VotesIn(Strict):
    """Community tallies for one tool of a comparison, as totals (not increments)."""

    slug: Slug
    tool: Name
    ship: Count
    skip: Count


class EventBase(Strict):
    id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Sender's event id; repeats of an id are ignored."
    )
    occurred_at: datetime | None = None


class ComparisonPublished(EventBase):
    type: Literal["comparison.published"]
    data: ComparisonIn


class ComparisonUpdated(EventBase):
    type: Literal["comparison.updated"]
    data: ComparisonIn


class ComparisonRetracted(EventBase):
    type: Literal["comparison.retracted"]
    data: RetractionIn


class VotesUpdated(EventBase):
    type: Literal["votes.updated"]
    data: VotesIn


Event = Annotated[
    ComparisonPublished | ComparisonUpdated | ComparisonRetracted | VotesUpdated,
    Field(discriminator="type"),
]

EVENT_MODELS: dict[str, type[EventBase]] = {
    "comparison.published": ComparisonPublished,
    "comparison.updated": ComparisonUpdated,
    "comparison.retracted": ComparisonRetracted,
    "votes.updated": VotesUpdated,
}


# --- outbound: what we send to the site (digest/site_events.py) ----------------------------------


class ReaderVoteData(Strict):
    """One reader's new or changed verdict on one tool of a comparison."""

    slug: Slug
    tool: Name
    tool_position: Literal[0, 1]
    choice: Literal["ship", "skip"]
    previous: Literal["ship", "skip"] | None = Field(
        description="The reader's earlier verdict on this tool (null: a first verdict)."
    )
    reader: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] = Field(
        description="Opaque, stable per reader (a keyed hash of our subscriber id); no address."
    )


class ReaderVoteCast(Strict):
    """`reader_vote.cast`, POSTed to DIGEST_SITE_WEBHOOK_URL; deduplicate by `id`."""

    id: Annotated[str, StringConstraints(min_length=36, max_length=36)] = Field(
        description="Event id (a UUID): the same event may arrive more than once."
    )
    type: Literal["reader_vote.cast"]
    occurred_at: datetime
    data: ReaderVoteData


OUTBOUND_EVENT_MODELS: dict[str, type[Strict]] = {"reader_vote.cast": ReaderVoteCast}
